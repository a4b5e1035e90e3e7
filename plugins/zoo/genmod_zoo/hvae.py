"""A VAE with two stochastic layers (Tomczak & Welling, 2018, "HVAE").

Generative model p(z2) p(z1|z2) p(x|z1, z2), inference model q(z2|x) q(z1|x, z2), all
networks gated MLPs as in the VampPrior paper. The top prior p(z2) is any registered prior:
a VampPrior is built on q(z2|x), its pseudo-inputs encoded by the top encoder.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.distributions import Distribution

from genmod import (
    Bound,
    Encoder,
    GenerativeModel,
    Likelihood,
    ModelContext,
    Prior,
    VAEConfig,
    diagonal_gaussian,
)
from genmod_zoo.gated import LOG_VAR_RANGE, GatedDense, GatedEncoder, gated_mlp


class HVAEConfig(VAEConfig):
    latent_dim: int = Field(40, ge=1, description="Size of the top latent z2 (the prior's).")
    z1_dim: int = Field(40, ge=1, description="Size of the lower latent z1.")
    hidden: int = Field(300, ge=1, description="Width of every gated layer.")


class _Gaussian(nn.Module):
    """Gated features to a diagonal Gaussian, log-variance bounded as in the paper."""

    def __init__(self, width: int, dim: int) -> None:
        super().__init__()
        self.mean = nn.Linear(width, dim)
        self.log_var = nn.Linear(width, dim)

    def forward(self, h: Tensor) -> Distribution:
        return diagonal_gaussian(self.mean(h), torch.clamp(self.log_var(h), *LOG_VAR_RANGE))


class _Joint(nn.Module):
    """``f(a, b)``: a gated layer on each input, one on their concatenation."""

    def __init__(self, a: int, b: int, width: int) -> None:
        super().__init__()
        self.a, self.b = GatedDense(a, width), GatedDense(b, width)
        self.joint = GatedDense(2 * width, width)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        ha, hb = self.a(a), self.b(b)
        ha = ha.expand(*hb.shape[:-1], ha.shape[-1])  # a has no sample dimension; b may
        return self.joint(torch.cat([ha, hb], dim=-1))


class HVAE(GenerativeModel):
    terms = ("reconstruction", "kl_z1", "kl_z2")
    bound = "-ELBO"

    def __init__(
        self,
        config: HVAEConfig,
        data_shape: tuple[int, ...],
        q_z2: Encoder,
        prior: Prior,
        likelihood: Likelihood,
    ) -> None:
        super().__init__()
        size, width = math.prod(data_shape), config.hidden
        self.params_shape = likelihood.params_shape(data_shape)
        self.q_z2, self.prior, self.likelihood = q_z2, prior, likelihood
        self.q_z1_features, self.q_z1 = (
            _Joint(size, config.latent_dim, width),
            _Gaussian(width, config.z1_dim),
        )
        self.p_z1_features = gated_mlp([config.latent_dim, width, width])
        self.p_z1 = _Gaussian(width, config.z1_dim)
        self.p_x_features = _Joint(config.z1_dim, config.latent_dim, width)
        self.p_x = nn.Linear(width, math.prod(self.params_shape))
        self.beta, self.kl_warmup_epochs, self.free_bits = (
            config.beta,
            config.kl_warmup_epochs,
            config.free_bits,
        )

    def _decode(self, z1: Tensor, z2: Tensor) -> Tensor:
        return self.p_x(self.p_x_features(z1, z2)).unflatten(-1, self.params_shape)

    def _log_terms(self, x: Tensor, samples: tuple[int, ...] = ()) -> tuple[Tensor, Tensor, Tensor]:
        """``log p(x|z1,z2)``, ``KL_z1`` and ``KL_z2`` estimates for ``samples`` draws per image."""
        q2 = self.q_z2(x)
        z2 = q2.rsample(samples)
        q1 = self.q_z1(self.q_z1_features(x.flatten(1), z2))
        z1 = q1.rsample()
        p1 = self.p_z1(self.p_z1_features(z2))
        log_px = self.likelihood.log_prob(self._decode(z1, z2), x)
        kl_z1 = q1.log_prob(z1) - p1.log_prob(z1)
        kl_z2 = q2.log_prob(z2) - self.prior.distribution().log_prob(z2)
        return log_px, kl_z1, kl_z2

    def loss(self, x: Tensor) -> tuple[Tensor, Bound]:
        log_px, kl_z1, kl_z2 = self._log_terms(x)
        # As for the one-layer VAE: warm-up ramps the KL weight, free bits floor each layer's KL.
        # Both KLs are single-sample estimates, as in the paper, so the bound and the
        # importance weights come from the same kind of draw.
        weight = self.beta * self.progress.ramp(self.kl_warmup_epochs)
        kls = sum(torch.clamp(kl.mean(), min=self.free_bits) for kl in (kl_z1, kl_z2))
        objective = -log_px.mean() + weight * kls
        bound = Bound(-log_px + kl_z1 + kl_z2, {"reconstruction": -log_px, "kl_z1": kl_z1, "kl_z2": kl_z2})
        return objective, bound

    def log_importance_weights(self, x: Tensor, k: int, chunk_size: int = 500) -> Tensor:
        chunks = []
        for start in range(0, k, chunk_size):
            log_px, kl_z1, kl_z2 = self._log_terms(x, (min(chunk_size, k - start),))
            chunks.append(log_px - kl_z1 - kl_z2)
        return torch.cat(chunks)

    def sample(self, n: int) -> Tensor:
        z2 = self.prior.sample(n)
        z1 = self.p_z1(self.p_z1_features(z2)).sample()
        return self.likelihood.mean(self._decode(z1, z2))

    def reconstruct(self, x: Tensor) -> Tensor:
        z2 = self.q_z2(x).mean
        z1 = self.q_z1(self.q_z1_features(x.flatten(1), z2)).mean
        return self.likelihood.mean(self._decode(z1, z2))


def build_hvae(config: HVAEConfig, context: ModelContext) -> HVAE:
    q_z2 = GatedEncoder(context.data_shape, [config.hidden, config.hidden], config.latent_dim)
    return HVAE(config, context.data_shape, q_z2, context.prior(config, q_z2), context.likelihood(config))
