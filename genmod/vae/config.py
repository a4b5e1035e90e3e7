"""The configs of the VAE family: the parts chosen by name, and the VAE's training options."""

from __future__ import annotations

from typing import Any

from pydantic import Field, NonNegativeInt

from genmod.config import ComponentRef, ModelConfig


class LatentConfig(ModelConfig):
    """Config of a latent-variable model whose prior and likelihood are chosen by name: the
    fields a model that is not a :class:`~genmod.VAE` reuses, without the VAE's training
    options it would otherwise have to honour."""

    latent_dim: int = Field(20, ge=1, description="Size of the latent vector z.")
    prior: ComponentRef = Field(
        ComponentRef(name="standard-normal"), description="Registered prior p(z), by name."
    )
    likelihood: ComponentRef = Field(
        ComponentRef(name="bernoulli"), description="Registered likelihood p(x|z), by name."
    )


class VAEConfig(LatentConfig):
    """Config of a VAE whose prior and likelihood are chosen by name, with its training options."""

    beta: float = Field(1.0, gt=0, description="Weight of the KL term in the training loss.")
    kl_warmup_epochs: NonNegativeInt = Field(
        0, description="KL warm-up: the KL weight grows linearly from 0 to beta over this many epochs."
    )
    free_bits: float = Field(
        0.0, ge=0, description="Free bits: a floor, in nats, on the batch-mean KL of each latent group."
    )

    def vae_options(self) -> dict[str, Any]:
        """The keyword arguments of :class:`genmod.VAE` this config sets."""
        return {"beta": self.beta, "kl_warmup_epochs": self.kl_warmup_epochs, "free_bits": self.free_bits}
