"""A flow posterior: a diagonal Gaussian pushed through inverse autoregressive flow steps.

Kingma et al. (2016), "Improved variational inference with inverse autoregressive flow". Each
step is ``z' = sigma * z + (1 - sigma) * m`` with ``(m, s) = MADE(z, h)``, ``sigma =
sigmoid(s + 1)``, where ``h`` is a context vector from the encoder; its log-determinant is
``sum(log sigma)``. Steps alternate the autoregressive order. The result is a
``torch.distributions.TransformedDistribution``, so ``rsample`` and ``log_prob`` are torch's:
``log_prob`` of a sample just drawn reuses the transforms' cache, and of any other point
inverts each step exactly in ``latent_dim`` passes.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from torch import Tensor, nn
from torch.distributions import Distribution, TransformedDistribution, constraints
from torch.distributions.transforms import Transform

from genmod import ComponentContext, Encoder, diagonal_gaussian
from genmod_zoo.gated import LOG_VAR_RANGE, gated_mlp

# Kingma et al. start each gate near "keep z" (sigmoid(1) ~ 0.73), so a fresh flow is close
# to the identity and training starts from the plain Gaussian posterior.
FORGET_BIAS = 1.0


class MaskedLinear(nn.Linear):
    def __init__(self, n_in: int, n_out: int, mask: Tensor) -> None:
        super().__init__(n_in, n_out)
        self.mask: Tensor
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """An autoregressive network: output ``i`` depends on inputs before ``i`` in ``order``
    only (Germain et al., 2015), and on an unconstrained context vector."""

    def __init__(self, dim: int, hidden: int, context: int, reverse: bool) -> None:
        super().__init__()
        order = torch.arange(dim).flip(0) if reverse else torch.arange(dim)
        hidden_degrees = torch.arange(hidden) % max(1, dim - 1)
        self.dim = dim
        self.inputs = MaskedLinear(dim, hidden, (hidden_degrees[:, None] >= order[None, :]).float())
        self.context = nn.Linear(context, hidden)
        self.hidden = MaskedLinear(
            hidden, hidden, (hidden_degrees[:, None] >= hidden_degrees[None, :]).float()
        )
        out_mask = (order[:, None] > hidden_degrees[None, :]).float()
        self.out = MaskedLinear(hidden, 2 * dim, torch.cat([out_mask, out_mask]))

    def forward(self, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        a = F.elu(self.inputs(z) + self.context(h))
        m, s = self.out(F.elu(self.hidden(a))).chunk(2, dim=-1)
        return m, s


class IAFStep(Transform):
    """One IAF step for a batch whose context is ``h``; the log-determinant of the step last
    applied is kept with torch's one-element transform cache."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, made: MADE, h: Tensor) -> None:
        super().__init__(cache_size=1)
        self.made = made
        self.h = h
        self._last: tuple[Tensor, Tensor] | None = None

    def _gate(self, z: Tensor) -> tuple[Tensor, Tensor]:
        m, s = self.made(z, self.h)
        # float32 under bf16 autocast: the flow's log-determinant is part of the bound.
        return m.float(), torch.sigmoid(s.float() + FORGET_BIAS)

    def _call(self, z: Tensor) -> Tensor:
        m, sigma = self._gate(z)
        self._last = (z, sigma)
        return sigma * z + (1 - sigma) * m

    def _inverse(self, y: Tensor) -> Tensor:
        # Autoregressive: after pass i, the first i+1 coordinates (in the step's order) are exact.
        z = torch.zeros_like(y)
        for _ in range(self.made.dim):
            m, sigma = self._gate(z)
            z = (y - (1 - sigma) * m) / sigma
        return z

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        if self._last is not None and self._last[0] is x:
            sigma = self._last[1]
        else:
            sigma = self._gate(x)[1]
        return torch.log(sigma).sum(-1)


class IAFOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hidden_dims: list[PositiveInt] = Field(
        [300, 300], min_length=1, description="Widths of the gated layers."
    )
    steps: PositiveInt = Field(2, description="Number of IAF steps.")
    flow_hidden: PositiveInt = Field(320, description="Hidden width of each step's MADE.")
    context: PositiveInt = Field(
        100, description="Size of the context vector h the encoder passes to the steps."
    )


class IAFEncoder(Encoder):
    """q(z|x): gated layers to a diagonal Gaussian and a context ``h``, then IAF steps."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, options: IAFOptions) -> None:
        super().__init__()
        width = options.hidden_dims[-1]
        self.body = gated_mlp([math.prod(data_shape), *options.hidden_dims])
        self.mean = nn.Linear(width, latent_dim)
        self.log_var = nn.Linear(width, latent_dim)
        self.context = nn.Linear(width, options.context)
        self.steps = nn.ModuleList(
            MADE(latent_dim, options.flow_hidden, options.context, reverse=i % 2 == 1)
            for i in range(options.steps)
        )

    def forward(self, x: Tensor) -> Distribution:
        features = self.body(x.flatten(1))
        log_var = torch.clamp(self.log_var(features), *LOG_VAR_RANGE)
        base = diagonal_gaussian(self.mean(features), log_var)
        h = self.context(features)
        steps: list[Transform] = [IAFStep(cast(MADE, made), h) for made in self.steps]
        return TransformedDistribution(base, steps, validate_args=False)


def make_encoder(options: IAFOptions, context: ComponentContext) -> IAFEncoder:
    return IAFEncoder(context.data_shape, context.latent_dim, options)
