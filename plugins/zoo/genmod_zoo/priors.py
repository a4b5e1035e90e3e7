"""Learnable priors: a mixture of Gaussians and the VampPrior.

torch has no closed-form KL between a Gaussian posterior and a mixture, so models using these
priors get the single-sample Monte Carlo KL automatically.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from genmod import ComponentContext, Prior


class MixtureOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    components: int = Field(10, ge=1, description="Number of Gaussian components K.")


class MixtureOfGaussiansPrior(Prior):
    """p(z) = Σ_k π_k N(z; μ_k, diag σ_k²) with learnable weights, means and scales."""

    def __init__(self, latent_dim: int, components: int) -> None:
        super().__init__()
        # Spread-out means so that components do not start identical and stay so.
        self.means = nn.Parameter(torch.randn(components, latent_dim))
        self.log_scales = nn.Parameter(torch.zeros(components, latent_dim))
        self.logits = nn.Parameter(torch.zeros(components))

    def distribution(self) -> Distribution:
        return MixtureSameFamily(
            Categorical(logits=self.logits, validate_args=False),
            Independent(Normal(self.means, self.log_scales.exp(), validate_args=False), 1),
            validate_args=False,
        )


class VampOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pseudo_inputs: int = Field(500, ge=1, description="Number of learned pseudo-inputs K.")
    init_mean: float = Field(
        0.5, gt=0, lt=1, description="Mean pixel value of the initial pseudo-inputs (the paper: 0.05)."
    )
    init_std: float = Field(0.025, ge=0, description="Their spread (the paper: 0.01).")


class VampPrior(Prior):
    """p(z) = (1/K) Σ_k q(z | u_k) over learned pseudo-inputs u_k (Tomczak & Welling, 2018).

    The pseudo-inputs live in data space (kept in [0, 1] by a sigmoid) and are encoded by the
    model's own encoder, so the prior moves with it.
    """

    def __init__(
        self, encoder: nn.Module, data_shape: tuple[int, ...], pseudo_inputs: int, mean: float, std: float
    ) -> None:
        super().__init__()
        self.encoder = encoder
        pixels = (mean + std * torch.randn(pseudo_inputs, *data_shape)).clamp(1e-3, 1 - 1e-3)
        self.pseudo_logits = nn.Parameter(torch.logit(pixels))

    @property
    def pseudo_inputs(self) -> torch.Tensor:
        return torch.sigmoid(self.pseudo_logits)

    def distribution(self) -> Distribution:
        components = self.encoder(self.pseudo_inputs)
        weights = torch.zeros(len(self.pseudo_logits), device=self.pseudo_logits.device)
        return MixtureSameFamily(
            Categorical(logits=weights, validate_args=False), components, validate_args=False
        )


def make_mixture(options: MixtureOptions, context: ComponentContext) -> MixtureOfGaussiansPrior:
    return MixtureOfGaussiansPrior(context.latent_dim, options.components)


def make_vampprior(options: VampOptions, context: ComponentContext) -> VampPrior:
    if context.encoder is None:
        raise ValueError("the VampPrior needs the model's encoder")
    return VampPrior(
        context.encoder, context.data_shape, options.pseudo_inputs, options.init_mean, options.init_std
    )
