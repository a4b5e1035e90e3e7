"""What ``genmod runs`` shows: a summary of every run folder under a directory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import ValidationError

from genmod import artifacts
from genmod.errors import DataError, one_line
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
    nll_epoch: int | None = None
    """The epoch whose weights ``eval.json`` evaluated."""

    @property
    def kept_epoch(self) -> int:
        """The epoch of the weights commands use: the best validation epoch, else the last."""
        return self.best_epoch if self.best_epoch is not None else self.epochs_done

    @property
    def stale_evaluation(self) -> bool:
        """``eval.json`` evaluated other weights than the ones the run keeps now."""
        return self.nll is not None and self.nll_epoch != self.kept_epoch


def summarize(run_dir: Path) -> RunSummary | None:
    """The summary of one run folder, or None if it is not one (it has no config.yaml).

    Raises :class:`~genmod.errors.DataError` naming the file of a run folder that cannot be
    read (a damaged config, metrics line or evaluation), so that it is listed as such.
    """
    config_file = run_dir / artifacts.CONFIG
    if not config_file.is_file():
        return None
    config = _read(config_file, artifacts.read_config)
    history = (
        _read(run_dir / artifacts.METRICS, read_metrics) if (run_dir / artifacts.METRICS).is_file() else []
    )
    evaluation = _read(run_dir / artifacts.EVAL, lambda _: artifacts.read_eval(run_dir))
    try:
        model, planned = str(config["model"]["name"]), int(config.get("train", {}).get("epochs", 0))
        nll, k = evaluation.get("nll"), evaluation.get("k")
        if not (nll is None or isinstance(nll, (int, float))) or not (k is None or isinstance(k, int)):
            raise TypeError("eval.json's nll or k is not a number")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{run_dir}: {artifacts.CONFIG} or {artifacts.EVAL} lacks a field ({exc})") from None
    validated = [record for record in history if record.validation is not None]
    best = min(validated, key=lambda record: record.validation.loss, default=None)  # type: ignore[union-attr]
    kept = best or (history[-1] if history else None)
    return RunSummary(
        path=run_dir,
        model=model,
        epochs_done=len(history),
        epochs_planned=planned,
        test_loss=None if kept is None else kept.test.loss,
        nll=nll,
        nll_k=k,
        seconds=sum(record.seconds for record in history),
        best_epoch=None if best is None else best.epoch,
        best_validation=None if best is None or best.validation is None else best.validation.loss,
        nll_epoch=evaluation.get("epoch"),
    )


_T = TypeVar("_T")


def _read(path: Path, read: Callable[[Path], _T]) -> _T:
    """``read(path)``, with any way the file can be damaged as one error naming it."""
    try:
        value = read(path)
    except (OSError, ValueError, TypeError, ValidationError, yaml.YAMLError) as exc:
        raise DataError(f"{path} is damaged ({one_line(exc, 100)})") from None
    if path.suffix in (".yaml", ".json") and not isinstance(value, dict):
        raise DataError(f"{path} is damaged (not a mapping)")
    return value


def list_runs(root: Path) -> tuple[list[RunSummary], list[str]]:
    """The summaries of the run folders in ``root`` (and ``root`` itself), and one line for
    each run folder that cannot be read: one damaged folder never hides the others."""
    summaries, damaged = [], []
    for candidate in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        try:
            summary = summarize(candidate)
        except DataError as exc:
            damaged.append(str(exc))
            continue
        if summary is not None:
            summaries.append(summary)
    return summaries, damaged
