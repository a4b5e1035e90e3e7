"""What a model reports for a batch: a per-example bound on -log p(x) and its named parts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor


@dataclass(frozen=True)
class Bound:
    """A per-example upper bound on ``-log p(x)`` in nats, and its named parts.

    ``value`` has shape ``(batch,)``; every entry of ``terms`` has the same shape and their
    names are the model's :attr:`GenerativeModel.terms`. For a VAE the terms are
    ``reconstruction`` and ``kl`` and sum to ``value`` (the negative ELBO); an IWAE's bound has
    no such parts. A model without a likelihood (a GAN, whose :attr:`GenerativeModel.bound`
    is ``None``) leaves ``value`` out and reports only its terms (e.g. its two losses).
    """

    value: Tensor | None
    terms: Mapping[str, Tensor] = field(default_factory=dict)
