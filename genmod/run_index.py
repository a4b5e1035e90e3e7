"""What ``genmod runs`` shows: a summary of every run folder under a directory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from genmod import artifacts
from genmod.errors import ConfigError, DataError, one_line
from genmod.metrics import read_metrics


@dataclass(frozen=True)
class RunSummary:
    path: Path
    model: str
    epochs_done: int
    epochs_planned: int
    test_loss: float | None
    """The test bound of the epoch whose weights the run keeps: the best monitored epoch, else
    the last (never the best test epoch: the test set chooses nothing); ``None`` where that
    epoch was not evaluated or the model has no bound."""
    nll: float | None
    nll_k: int | None
    seconds: float
    best_epoch: int | None = None
    """The epoch with the best ``train.monitor`` (the weights in best.pt), where it was reported."""
    best_validation: float | None = None
    """Its value."""
    nll_epoch: int | None = None
    """The epoch whose weights ``eval.json`` evaluated."""
    quantity: str | None = "bound"
    """What :attr:`test_loss` is (the model's bound; ``None``: it has none)."""
    monitor: str = "validation/loss"
    nll_quantity: str = "IS-NLL"
    """What :attr:`nll` is: ``IS-NLL`` (with :attr:`nll_k`), ``exact NLL`` or a bound's name."""
    nll_images: int | None = None
    sample_quality: dict[str, Any] = field(default_factory=dict)
    """``eval.json``'s sample-quality figures by metric, each with how it was computed."""
    evaluation: dict[str, Any] = field(default_factory=dict)
    """``eval.json`` as written (``{}`` where the run has none)."""

    @property
    def kept_epoch(self) -> int:
        """The epoch of the weights commands use: the best validation epoch, else the last."""
        return self.best_epoch if self.best_epoch is not None else self.epochs_done

    @property
    def stale_evaluation(self) -> bool:
        """``eval.json`` evaluated other weights than the ones the run keeps now."""
        return self.nll is not None and self.nll_epoch != self.kept_epoch


def summarize(run_dir: str | Path) -> RunSummary | None:
    """The summary of one run folder, or None if it is not one (it has no config.yaml).

    Raises :class:`~genmod.errors.DataError` naming the file of a run folder that cannot be
    read (a damaged config, metrics line or evaluation), so that it is listed as such.
    """
    run_dir = Path(run_dir)
    config_file = run_dir / artifacts.CONFIG
    if not config_file.is_file():
        return None
    config = _read(config_file, artifacts.read_config)
    history = (
        _read(run_dir / artifacts.METRICS, read_metrics) if (run_dir / artifacts.METRICS).is_file() else []
    )
    evaluation = _read(run_dir / artifacts.EVAL, lambda _: artifacts.read_eval(run_dir))
    try:
        train = config.get("train", {})
        model, planned = str(config["model"]["name"]), int(train.get("epochs", 0))
        monitor, lower = (
            str(train.get("monitor", "validation/loss")),
            train.get("monitor_mode", "min") == "min",
        )
        nll, k = evaluation.get("nll"), evaluation.get("k")
        if not (nll is None or isinstance(nll, (int, float))) or not (k is None or isinstance(k, int)):
            raise TypeError("eval.json's nll or k is not a number")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{run_dir}: {artifacts.CONFIG} or {artifacts.EVAL} lacks a field ({exc})") from None
    monitored = [(value, r) for r in history if (value := r.scalars().get(monitor)) is not None]
    best = (min if lower else max)(monitored, key=lambda pair: pair[0], default=None)
    kept = best[1] if best else (history[-1] if history else None)
    return RunSummary(
        path=run_dir,
        model=model,
        epochs_done=len(history),
        epochs_planned=planned,
        test_loss=None if kept is None or kept.test is None else kept.test.loss,
        nll=nll,
        nll_k=k,
        seconds=sum(record.seconds for record in history),
        best_epoch=None if best is None else best[1].epoch,
        best_validation=None if best is None else best[0],
        nll_epoch=evaluation.get("epoch"),
        quantity=history[-1].quantity if history else "bound",
        monitor=monitor,
        nll_quantity=str(evaluation.get("quantity", "IS-NLL")),
        nll_images=evaluation.get("images"),
        sample_quality=dict(evaluation.get(artifacts.SAMPLE_QUALITY) or {}),
        evaluation=evaluation,
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


def list_runs(root: str | Path, *, by_monitor: bool = False) -> tuple[list[RunSummary], list[str]]:
    """The summaries of the run folders in ``root`` (and ``root`` itself), and one line for
    each run folder that cannot be read: one damaged folder never hides the others. In name
    order, or with ``by_monitor`` the best monitored value first (a sweep's table)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"no runs folder {root}: pass the folder your runs are in (default: runs)")
    summaries, damaged = [], []
    for candidate in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        try:
            summary = summarize(candidate)
        except DataError as exc:
            damaged.append(str(exc))
            continue
        if summary is not None:
            summaries.append(summary)
    if by_monitor:
        summaries.sort(
            key=lambda s: (s.best_validation is None, s.best_validation or 0.0, s.test_loss or 0.0)
        )
    return summaries, damaged
