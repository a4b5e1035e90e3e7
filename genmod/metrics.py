"""One epoch's metrics: the typed row of ``metrics.jsonl``.

The terminal's epoch line, the loss plot, the trackers and ``genmod runs`` all read this record,
so its fields are spelled once, here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer


class SplitMetrics(BaseModel):
    """Per-image means over one split, in nats."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loss: float | None
    """The model's bound on -log p(x), which :attr:`EpochRecord.quantity` names: the negative
    ELBO for a VAE (unweighted, whatever the training objective); ``None`` for a model without
    one (a GAN)."""
    terms: dict[str, float]
    """Its named parts (the model's ``terms``), e.g. ``reconstruction`` and ``kl``."""
    sample_quality: dict[str, float] = {}
    """Sample-quality figures of the model's samples against this split's images
    (``train.sample_metrics``), e.g. ``fid``; on the epochs they were computed."""

    @model_serializer(mode="wrap")
    def _only_computed(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Lines without sample metrics stay as genmod 0.2 wrote them.
        data: dict[str, Any] = handler(self)
        if not self.sample_quality:
            data.pop("sample_quality", None)
        return data

    @classmethod
    def from_totals(cls, totals: torch.Tensor, names: Sequence[str], bounded: bool = True) -> SplitMetrics:
        """From sums of (bound, *terms named ``names``, images); ``bounded``: whether the
        model reports a bound at all."""
        loss, *terms = (totals[:-1] / totals[-1]).tolist()
        return cls(loss=loss if bounded else None, terms=dict(zip(names, terms, strict=True)))


class EpochRecord(BaseModel):
    """One line of ``metrics.jsonl``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epoch: int
    quantity: str | None = "-ELBO"
    """What every split's ``loss`` is: the model's :attr:`~genmod.GenerativeModel.bound`
    (``-ELBO``, ``NLL``, ...; ``None`` for a model without one). Lines of genmod before 0.3
    lack it: they were all reported as the -ELBO."""
    train: SplitMetrics
    validation: SplitMetrics | None = None
    """With ``data.validation``, on the epochs evaluated (``train.eval_every``): what
    ``train.monitor`` follows by default."""
    test: SplitMetrics | None = None
    """Reported only, on the epochs evaluated: the test set never chooses anything. ``None``
    on other epochs, and for a model with no per-epoch evaluation (no ``loss``)."""
    lr: float
    """The learning rate the epoch was trained with."""
    seconds: float
    """Wall time of the epoch: training and evaluation."""
    skipped: int = 0
    """Updates skipped by ``train.skip_updates_above``."""

    def scalars(self) -> dict[str, float]:
        """The record as flat scalars, the names every tracker logs: ``train/loss``,
        ``train/kl``, ``validation/loss``, ``test/reconstruction``, ``lr``, ``seconds``, ..."""
        flat: dict[str, float] = {}
        for split in ("train", "validation", "test"):
            metrics: SplitMetrics | None = getattr(self, split)
            if metrics is not None:
                flat.update(
                    {
                        f"{split}/{name}": value
                        for name, value in {
                            "loss": metrics.loss,
                            **metrics.terms,
                            **metrics.sample_quality,
                        }.items()
                        if value is not None
                    }
                )
        return {**flat, "lr": self.lr, "seconds": self.seconds, "skipped": float(self.skipped)}


def bits_per_dim(nats: float, dims: int) -> float:
    """A per-image bound or NLL in nats, in bits per dimension (per colour channel of each
    pixel): the unit in which likelihoods of 8-bit images are compared."""
    return nats / (dims * math.log(2))


def write_metrics(history: Sequence[EpochRecord], path: Path) -> None:
    """Rewrite the whole file, so it always agrees with the checkpoint's history."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(record.model_dump_json() + "\n" for record in history))
    tmp.replace(path)


MAX_BYTES = 256 * 2**20
"""No run writes more: a line is about 400 bytes, so this is over half a million epochs."""


def read_metrics(path: Path) -> list[EpochRecord]:
    """The records of ``metrics.jsonl``; ``ValueError`` for a file no run could have written."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ValueError(f"it is {size / 2**20:,.0f} MB, more than any run writes ({MAX_BYTES // 2**20} MB)")
    return [EpochRecord.model_validate(json.loads(line)) for line in path.read_text().splitlines() if line]
