"""One epoch's metrics: the typed row of ``metrics.jsonl``.

The terminal's epoch line, the loss plot, the trackers and ``genmod runs`` all read this record,
so its fields are spelled once, here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict

# The named per-image terms of the negative ELBO, in the order the training loop sums them.
TERMS = ("reconstruction", "kl")


class SplitMetrics(BaseModel):
    """Per-image means over one split, in nats."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loss: float
    """The negative ELBO (unweighted, whatever the training objective)."""
    terms: dict[str, float]
    """Its named parts, e.g. ``reconstruction`` and ``kl``."""

    @classmethod
    def from_totals(cls, totals: torch.Tensor) -> SplitMetrics:
        """From sums of (-ELBO, *TERMS, images)."""
        loss, *terms = (totals[:-1] / totals[-1]).tolist()
        return cls(loss=loss, terms=dict(zip(TERMS, terms, strict=True)))


class EpochRecord(BaseModel):
    """One line of ``metrics.jsonl``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epoch: int
    train: SplitMetrics
    test: SplitMetrics
    lr: float
    """The learning rate the epoch was trained with."""
    seconds: float
    """Wall time of the epoch: training, evaluation, sample grid and checkpoint."""


def write_metrics(history: Sequence[EpochRecord], path: Path) -> None:
    """Rewrite the whole file, so it always agrees with the checkpoint's history."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(record.model_dump_json() + "\n" for record in history))
    tmp.replace(path)


def read_metrics(path: Path) -> list[EpochRecord]:
    return [EpochRecord.model_validate(json.loads(line)) for line in path.read_text().splitlines() if line]
