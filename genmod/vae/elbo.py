"""The evidence lower bound of the VAE family.

All quantities are per example, in nats. Each posterior sample is one reparameterized draw
``z = mu + sigma * eps``: the seed notebook averaged two draws while its KL assumed one,
which makes its reported loss a biased estimate of no bound at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution


@dataclass(frozen=True)
class ELBOTerms:
    """Per-example parts of the negative ELBO: ``-ELBO = reconstruction + kl``."""

    reconstruction: Tensor
    """``-log p(x|z)`` for one reparameterized ``z ~ q(z|x)``."""
    kl: Tensor
    """``KL(q(z|x) || p(z))``: analytic when torch knows the pair, else one-sample Monte Carlo."""

    @property
    def negative_elbo(self) -> Tensor:
        return self.reconstruction + self.kl


def kl_term(posterior: Distribution, prior: Distribution, z: Tensor) -> Tensor:
    """``KL(q || p)`` per example: analytic if the pair is registered with torch's KL registry
    (``torch.distributions.kl.register_kl``), else the one-sample estimate ``log q(z) - log p(z)``.

    ``prior`` is the distribution itself, built once per step by the caller: a prior such as the
    VampPrior encodes all its pseudo-inputs to build it.
    """
    try:
        return torch.distributions.kl_divergence(posterior, prior)
    except NotImplementedError:
        return posterior.log_prob(z) - prior.log_prob(z)
