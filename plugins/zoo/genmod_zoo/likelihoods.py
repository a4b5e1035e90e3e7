"""Likelihoods beyond the Bernoulli: continuous Bernoulli and Gaussian."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.distributions import ContinuousBernoulli, Distribution, Independent, Normal

from genmod import ComponentContext, Likelihood, NoOptions


class ContinuousBernoulliLikelihood(Likelihood):
    """The properly normalised density on [0, 1] (Loaiza-Ganem & Cunningham, 2019).

    torch's implementation includes log C(λ) and switches to a Taylor expansion around λ = 0.5,
    where the closed form is 0/0, so it is stable for every logit.
    """

    def __init__(self, data_ndim: int) -> None:
        super().__init__()
        self.data_ndim = data_ndim

    def forward(self, params: Tensor) -> Distribution:
        return Independent(ContinuousBernoulli(logits=params, validate_args=False), self.data_ndim)


class GaussianOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scale: float = Field(0.1, gt=0, description="Standard deviation (the initial one if learned).")
    variance: Literal["fixed", "learned"] = Field(
        "fixed", description="fixed: one constant scale; learned: one learnable scale per pixel."
    )


class GaussianLikelihood(Likelihood):
    """N(x; μ, σ²) per pixel with μ the decoder output and σ fixed or learned per pixel."""

    def __init__(self, data_shape: tuple[int, ...], scale: float, learned: bool) -> None:
        super().__init__()
        log_scale = torch.full(data_shape, math.log(scale))
        if learned:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.data_ndim = len(data_shape)

    def forward(self, params: Tensor) -> Distribution:
        return Independent(Normal(params, self.log_scale.exp(), validate_args=False), self.data_ndim)


def make_continuous_bernoulli(options: NoOptions, context: ComponentContext) -> ContinuousBernoulliLikelihood:
    return ContinuousBernoulliLikelihood(len(context.data_shape))


def make_gaussian(options: GaussianOptions, context: ComponentContext) -> GaussianLikelihood:
    return GaussianLikelihood(context.data_shape, options.scale, options.variance == "learned")
