"""What ``genmod runs`` shows: a summary of every run folder under a directory."""

from __future__ import annotations

import json
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
    best_test_loss: float | None
    nll: float | None
    nll_k: int | None
    seconds: float


def summarize(run_dir: Path) -> RunSummary | None:
    """The summary of one run folder, or None if it is not one."""
    config_file = run_dir / artifacts.CONFIG
    if not config_file.is_file():
        return None
    try:
        config = artifacts.read_config(config_file)
        metrics_file = run_dir / artifacts.METRICS
        history = read_metrics(metrics_file) if metrics_file.is_file() else []
        evaluation = (
            json.loads((run_dir / artifacts.EVAL).read_text()) if (run_dir / artifacts.EVAL).is_file() else {}
        )
        return RunSummary(
            path=run_dir,
            model=config["model"]["name"],
            epochs_done=len(history),
            epochs_planned=int(config.get("train", {}).get("epochs", 0)),
            best_test_loss=min((record.test.loss for record in history), default=None),
            nll=evaluation.get("nll"),
            nll_k=evaluation.get("k"),
            seconds=sum(record.seconds for record in history),
        )
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        return None  # a half-written or foreign folder is not listed


def list_runs(root: Path) -> list[RunSummary]:
    candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    return [s for s in map(summarize, candidates) if s is not None]
