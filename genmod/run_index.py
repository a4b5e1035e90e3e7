"""What ``genmod runs`` shows: a summary of every run folder under a directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from genmod import artifacts
from genmod.metrics import read_metrics


@dataclass(frozen=True)
class RunSummary:
    path: Path
    model: str
    epochs_done: int
    epochs_planned: int
    test_loss: float | None
    """The test -ELBO of the epoch whose weights the run keeps: the best validation epoch, else
    the last (never the best test epoch: the test set chooses nothing)."""
    nll: float | None
    nll_k: int | None
    seconds: float
    best_epoch: int | None = None
    """With a validation set: the epoch with the best validation -ELBO (the weights in best.pt)."""
    best_validation: float | None = None


def summarize(run_dir: Path) -> RunSummary | None:
    """The summary of one run folder, or None if it is not one."""
    config_file = run_dir / artifacts.CONFIG
    if not config_file.is_file():
        return None
    try:
        config = artifacts.read_config(config_file)
        metrics_file = run_dir / artifacts.METRICS
        history = read_metrics(metrics_file) if metrics_file.is_file() else []
        evaluation = artifacts.read_eval(run_dir)
        validated = [record for record in history if record.validation is not None]
        best = min(validated, key=lambda record: record.validation.loss, default=None)  # type: ignore[union-attr]
        kept = best or (history[-1] if history else None)
        return RunSummary(
            path=run_dir,
            model=config["model"]["name"],
            epochs_done=len(history),
            epochs_planned=int(config.get("train", {}).get("epochs", 0)),
            test_loss=None if kept is None else kept.test.loss,
            nll=evaluation.get("nll"),
            nll_k=evaluation.get("k"),
            seconds=sum(record.seconds for record in history),
            best_epoch=None if best is None else best.epoch,
            best_validation=None if best is None or best.validation is None else best.validation.loss,
        )
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        return None  # a half-written or foreign folder is not listed


def list_runs(root: Path) -> list[RunSummary]:
    candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    return [s for s in map(summarize, candidates) if s is not None]
