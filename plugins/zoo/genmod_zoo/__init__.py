"""genmod-zoo: swappable priors and likelihoods, more VAE families and other model families.

Written only against genmod's public API. Every component is selectable by name, e.g.
``genmod run mlp-vae --set model.prior=vampprior --set model.likelihood=continuous-bernoulli``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from genmod import ComponentSpec, ModelSpec, NoOptions, hookimpl
from genmod_zoo import (
    conv,
    dcgan,
    diffusion,
    flows,
    gated,
    glow,
    hvae,
    likelihoods,
    logistic,
    models,
    pixelcnn,
    priors,
)


def _recipe(name: str) -> Path:
    return Path(str(files(__name__) / "recipes" / f"{name}.yaml"))


@hookimpl
def register_priors(register):
    register(
        ComponentSpec(
            name="mixture",
            build=priors.make_mixture,
            options=priors.MixtureOptions,
            description="Learnable mixture of K diagonal Gaussians (Monte Carlo KL).",
        )
    )
    register(
        ComponentSpec(
            name="vampprior",
            build=priors.make_vampprior,
            options=priors.VampOptions,
            description="VampPrior: mixture of q(z|u_k) over learned pseudo-inputs (Monte Carlo KL).",
        )
    )


@hookimpl
def register_likelihoods(register):
    register(
        ComponentSpec(
            name="continuous-bernoulli",
            build=likelihoods.make_continuous_bernoulli,
            options=NoOptions,
            description="Continuous Bernoulli on logits, with its normalising constant.",
        )
    )
    register(
        ComponentSpec(
            name="gaussian",
            build=likelihoods.make_gaussian,
            options=likelihoods.GaussianOptions,
            description="Gaussian per pixel around the decoder output; fixed or learned scale.",
        )
    )
    register(
        ComponentSpec(
            name="logistic-mixture",
            build=logistic.make_logistic_mixture,
            options=logistic.LogisticMixtureOptions,
            description="Discretized logistic mixture over 8-bit values, colours coupled (PixelCNN++).",
        )
    )


@hookimpl
def register_encoders(register):
    register(
        ComponentSpec(
            name="conv",
            build=conv.make_encoder,
            options=conv.ConvOptions,
            description="One stride-2 convolution per entry of channels (two by default) for C×H×W "
            "images; H and W multiples of 2 ** len(channels).",
        )
    )
    register(
        ComponentSpec(
            name="gated-mlp",
            build=gated.make_encoder,
            options=gated.GatedOptions,
            description="Gated dense layers to a diagonal Gaussian (VampPrior paper).",
        )
    )
    register(
        ComponentSpec(
            name="iaf",
            build=flows.make_encoder,
            options=flows.IAFOptions,
            description="Gaussian pushed through inverse autoregressive flow steps (Monte Carlo KL).",
        )
    )


@hookimpl
def register_decoders(register):
    register(
        ComponentSpec(
            name="conv",
            build=conv.make_decoder,
            options=conv.ConvOptions,
            description="One stride-2 transposed convolution per entry of channels (two by default) to "
            "the likelihood's parameters per pixel.",
        )
    )
    register(
        ComponentSpec(
            name="gated-mlp",
            build=gated.make_decoder,
            options=gated.GatedOptions,
            description="Gated dense layers from z to per-pixel parameters (VampPrior paper).",
        )
    )


MODELS = (
    ModelSpec(
        name="beta-vae",
        config=models.ComposedVAEConfig,
        build=models.build_vae,
        recipe=_recipe("beta-vae"),
        description="VAE whose KL term is weighted by beta; encoder/decoder chosen by name.",
    ),
    ModelSpec(
        name="iwae",
        config=models.IWAEConfig,
        build=models.build_iwae,
        recipe=_recipe("iwae"),
        description="Importance-weighted autoencoder trained on the k-sample bound.",
    ),
    ModelSpec(
        name="conv-vae",
        config=models.ConvVAEConfig,
        build=models.build_vae,
        recipe=_recipe("conv-vae"),
        description="Convolutional encoder/decoder VAE for C×H×W images (H, W multiples of 4).",
    ),
    ModelSpec(
        name="hvae",
        config=hvae.HVAEConfig,
        build=hvae.build_hvae,
        recipe=_recipe("hvae"),
        description="Two stochastic layers, p(z2) p(z1|z2) p(x|z1,z2), gated layers (Tomczak & Welling).",
    ),
    ModelSpec(
        name="pixelcnn",
        config=pixelcnn.PixelCNNConfig,
        build=pixelcnn.build,
        recipe=_recipe("pixelcnn"),
        description="Gated PixelCNN of binary images: exact NLL, sampled pixel by pixel.",
    ),
    ModelSpec(
        name="dcgan",
        config=dcgan.DCGANConfig,
        build=dcgan.build,
        recipe=_recipe("dcgan"),
        description="DCGAN: convolutional generator and discriminator, two optimizers, no likelihood.",
    ),
    ModelSpec(
        name="diffusion",
        config=diffusion.DiffusionConfig,
        build=diffusion.build,
        recipe=_recipe("diffusion"),
        description="Variational diffusion model of 8-bit images: its bound in bits/dim, DDIM sampling.",
    ),
    ModelSpec(
        name="glow",
        config=glow.GlowConfig,
        build=glow.build,
        recipe=_recipe("glow"),
        description="Glow: multi-scale flow of dequantized 8-bit images, its bound in bits/dim (normflows).",
    ),
)
"""Every model the zoo ships, each with its recipe (recipes/NAME.yaml)."""


@hookimpl
def register_models(register):
    for spec in MODELS:
        register(spec)
