"""Gated dense layers and the encoder/decoder built from them (Tomczak & Welling, 2018).

A gated layer is ``h = (W x + b) * sigmoid(V x + c)``: the gate lets each unit switch itself
off, which the VampPrior paper found better than ReLU MLPs on binarized MNIST.
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from torch import Tensor, nn
from torch.distributions import Distribution

from genmod import ComponentContext, Decoder, Encoder, diagonal_gaussian

# The VampPrior paper bounds the posterior's log-variance with hardtanh(-6, 2): tiny or huge
# variances early in training otherwise make the Monte Carlo KL noisy.
LOG_VAR_RANGE = (-6.0, 2.0)


class GatedDense(nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.h = nn.Linear(n_in, n_out)
        self.g = nn.Linear(n_in, n_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


def gated_mlp(sizes: list[int]) -> nn.Sequential:
    return nn.Sequential(*(GatedDense(a, b) for a, b in zip(sizes, sizes[1:], strict=False)))


class GatedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hidden_dims: list[PositiveInt] = Field(
        [300, 300], min_length=1, description="Widths of the gated layers."
    )


class GatedEncoder(Encoder):
    """Gated layers to a diagonal Gaussian q(z|x), log-variance bounded to [-6, 2]."""

    def __init__(self, data_shape: tuple[int, ...], hidden_dims: list[int], latent_dim: int) -> None:
        super().__init__()
        self.body = gated_mlp([math.prod(data_shape), *hidden_dims])
        self.mean = nn.Linear(hidden_dims[-1], latent_dim)
        self.log_var = nn.Linear(hidden_dims[-1], latent_dim)

    def forward(self, x: Tensor) -> Distribution:
        h = self.body(x.flatten(1))
        return diagonal_gaussian(self.mean(h), torch.clamp(self.log_var(h), *LOG_VAR_RANGE))


class GatedDecoder(Decoder):
    """Gated layers from z to per-pixel parameters (logits for a Bernoulli likelihood)."""

    def __init__(self, latent_dim: int, hidden_dims: list[int], params_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.params_shape = params_shape
        self.body = gated_mlp([latent_dim, *reversed(hidden_dims)])
        self.head = nn.Linear(hidden_dims[0], math.prod(params_shape))

    def forward(self, z: Tensor) -> Tensor:
        return self.head(self.body(z)).unflatten(-1, self.params_shape)


def make_encoder(options: GatedOptions, context: ComponentContext) -> GatedEncoder:
    return GatedEncoder(context.data_shape, options.hidden_dims, context.latent_dim)


def make_decoder(options: GatedOptions, context: ComponentContext) -> GatedDecoder:
    return GatedDecoder(context.latent_dim, options.hidden_dims, context.params_shape)
