from __future__ import annotations

import torch
from torch.distributions import Distribution, Independent, Normal

from genmod.vae.components import Prior


class StandardNormalPrior(Prior):
    """p(z) = N(0, I)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        # Buffers, not constants, so that the prior follows the model across devices.
        self.loc: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def distribution(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1)
