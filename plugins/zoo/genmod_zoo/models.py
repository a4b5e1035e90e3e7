"""VAEs assembled from registered components by name: β-VAE, IWAE and the conv VAE."""

from __future__ import annotations

from pydantic import Field, model_validator
from torch import Tensor

from genmod import VAE, Bound, ComponentRef, Encoder, ModelContext, VAEConfig, log_mean_exp


class ComposedVAEConfig(VAEConfig):
    encoder: ComponentRef = Field(ComponentRef(name="mlp"), description="Registered encoder, by name.")
    decoder: ComponentRef = Field(ComponentRef(name="mlp"), description="Registered decoder, by name.")


class ConvVAEConfig(ComposedVAEConfig):
    encoder: ComponentRef = Field(ComponentRef(name="conv"), description="Registered encoder, by name.")
    decoder: ComponentRef = Field(ComponentRef(name="conv"), description="Registered decoder, by name.")


class IWAEConfig(ComposedVAEConfig):
    k: int = Field(5, ge=1, description="Importance samples per example in the training bound.")

    @model_validator(mode="after")
    def _unweighted(self) -> IWAEConfig:
        if self.beta != 1.0 or self.kl_warmup_epochs or self.free_bits:
            raise ValueError(
                "the IWAE bound has no KL term to weight, warm up or floor: leave beta, kl_warmup_epochs and free_bits unset"
            )
        return self


class IWAE(VAE):
    """Trained on, and reporting, the k-sample importance-weighted bound (Burda et al., 2016).

    The bound has no reconstruction and KL parts; with ``k = 1`` it is the single-sample ELBO
    with a Monte Carlo KL term.
    """

    terms = ()
    bound = "-IWAE bound"

    def __init__(self, *parts, k: int) -> None:
        super().__init__(*parts)
        self.k = k

    def loss(self, x: Tensor) -> tuple[Tensor, Bound]:
        bound = -log_mean_exp(self.log_importance_weights(x, self.k, chunk_size=self.k), dim=0)
        return bound.mean(), Bound(bound)


def _parts(config: ComposedVAEConfig, context: ModelContext):
    encoder = context.component("encoder", config.encoder, config.latent_dim)
    assert isinstance(encoder, Encoder)
    likelihood = context.likelihood(config)
    decoder = context.decoder(config.decoder, config.latent_dim, likelihood)
    return encoder, decoder, context.prior(config, encoder), likelihood


def build_vae(config: ComposedVAEConfig, context: ModelContext) -> VAE:
    return VAE(*_parts(config, context), **config.vae_options())


def build_iwae(config: IWAEConfig, context: ModelContext) -> IWAE:
    return IWAE(*_parts(config, context), k=config.k)
