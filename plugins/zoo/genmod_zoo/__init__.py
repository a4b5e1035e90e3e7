"""genmod-zoo: swappable priors and likelihoods and three more VAE families.

Written only against genmod's public API. Every component is selectable by name, e.g.
``genmod run mlp-vae --set model.prior=vampprior --set model.likelihood=continuous-bernoulli``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from genmod import ComponentSpec, ModelSpec, NoOptions, hookimpl
from genmod_zoo import conv, likelihoods, models, priors


def _recipe(name: str) -> Path:
    return Path(str(files(__name__) / "recipes" / f"{name}.yaml"))


@hookimpl
def register_priors(register):
    register(
        ComponentSpec(
            "mixture",
            priors.make_mixture,
            priors.MixtureOptions,
            "Learnable mixture of K diagonal Gaussians (Monte Carlo KL).",
        )
    )
    register(
        ComponentSpec(
            "vampprior",
            priors.make_vampprior,
            priors.VampOptions,
            "VampPrior: mixture of q(z|u_k) over learned pseudo-inputs (Monte Carlo KL).",
        )
    )


@hookimpl
def register_likelihoods(register):
    register(
        ComponentSpec(
            "continuous-bernoulli",
            likelihoods.make_continuous_bernoulli,
            NoOptions,
            "Continuous Bernoulli on logits, with its normalising constant.",
        )
    )
    register(
        ComponentSpec(
            "gaussian",
            likelihoods.make_gaussian,
            likelihoods.GaussianOptions,
            "Gaussian per pixel around the decoder output; fixed or learned scale.",
        )
    )


@hookimpl
def register_encoders(register):
    register(
        ComponentSpec(
            "conv", conv.make_encoder, conv.ConvOptions, "Two stride-2 convolutions for C×28×28 images."
        )
    )


@hookimpl
def register_decoders(register):
    register(
        ComponentSpec(
            "conv", conv.make_decoder, conv.ConvOptions, "Two stride-2 transposed convolutions to C×28×28."
        )
    )


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            "beta-vae",
            models.ComposedVAEConfig,
            models.build_vae,
            _recipe("beta-vae"),
            "VAE whose KL term is weighted by beta; encoder/decoder chosen by name.",
        )
    )
    register(
        ModelSpec(
            "iwae",
            models.IWAEConfig,
            models.build_iwae,
            _recipe("iwae"),
            "Importance-weighted autoencoder trained on the k-sample bound.",
        )
    )
    register(
        ModelSpec(
            "conv-vae",
            models.ConvVAEConfig,
            models.build_vae,
            _recipe("conv-vae"),
            "Convolutional encoder/decoder VAE for 1×28×28 images.",
        )
    )
