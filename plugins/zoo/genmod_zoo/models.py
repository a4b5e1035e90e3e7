"""VAEs assembled from registered components by name: β-VAE, IWAE and the conv VAE."""

from __future__ import annotations

from pydantic import Field, model_validator
from torch import Tensor

from genmod import VAE, ComponentRef, ELBOTerms, ModelContext, VAEConfig, log_mean_exp


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
        if self.beta != 1.0:
            raise ValueError("the IWAE bound has no KL term to weight: leave beta at 1")
        return self


class IWAE(VAE):
    """Trained on the k-sample importance-weighted bound (Burda et al., 2016).

    With ``k = 1`` the objective is the single-sample ELBO with a Monte Carlo KL term.
    """

    def __init__(self, *parts, k: int) -> None:
        super().__init__(*parts)
        self.k = k

    def loss(self, x: Tensor) -> tuple[Tensor, ELBOTerms]:
        posterior = self.encoder(x)
        z = posterior.rsample((self.k,))
        reconstruction = -self.likelihood(self.decoder(z)).log_prob(x)
        log_ratio = posterior.log_prob(z) - self.prior.log_prob(z)
        bound = log_mean_exp(-(reconstruction + log_ratio), dim=0)
        # The reported terms are the plain ELBO's, averaged over the k samples.
        return -bound.mean(), ELBOTerms(reconstruction=reconstruction.mean(0), kl=log_ratio.mean(0))


def _parts(config: ComposedVAEConfig, context: ModelContext):
    encoder = context.component("encoder", config.encoder, config.latent_dim)
    decoder = context.component("decoder", config.decoder, config.latent_dim)
    return encoder, decoder, context.prior(config, encoder), context.likelihood(config)


def build_vae(config: ComposedVAEConfig, context: ModelContext) -> VAE:
    return VAE(*_parts(config, context), beta=config.beta)


def build_iwae(config: IWAEConfig, context: ModelContext) -> IWAE:
    return IWAE(*_parts(config, context), k=config.k)
