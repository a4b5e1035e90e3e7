"""Experiment trackers: the :class:`Logger` interface plugins implement, and the fan-out a run
reports to. ``metrics.jsonl`` is always written besides them.

A logger is registered like any component (``register_loggers``) and chosen by name in
``train.loggers``. genmod keeps the id of each tracked run in ``RUN_DIR/trackers.json``, so
``genmod run --resume`` continues the same tracked run instead of starting a new one.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genmod.errors import ConfigError

if TYPE_CHECKING:
    from genmod.metrics import EpochRecord

TRACKERS = "trackers.json"
FOLDER_KEY = "folder"
"""The key of ``trackers.json`` naming the run folder its ids belong to."""
"""``{logger name: tracked run id}`` of a run folder."""


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    """What a logger is told about the run it tracks."""

    run_dir: Path
    name: str
    """The run folder's name: a readable name for the tracked run."""
    config: dict[str, Any]
    """The resolved config, nested as in ``config.yaml``."""
    params: dict[str, Any]
    """The same, flat: ``{"train.lr": 0.001, "model.prior": "standard-normal", ...}``."""
    resume_id: str | None = None
    """The tracked run to continue (``genmod run --resume``), as :meth:`Logger.open` returned it."""


@dataclass(frozen=True)
class Opened:
    """What :meth:`Logger.open` returns."""

    id: str
    """The tracked run's id, handed back as :attr:`RunInfo.resume_id` on resume."""
    where: str
    """One line for the terminal saying where the run is tracked."""


class Logger(abc.ABC):
    """An experiment tracker. genmod calls :meth:`open` once, :meth:`log` after every epoch,
    :meth:`log_images` whenever it writes a sample grid, the loss plot or the reconstructions,
    and :meth:`close` however the run ends (on rank 0 only)."""

    @abc.abstractmethod
    def open(self, run: RunInfo) -> Opened:
        """Start tracking ``run`` (log its config), or continue ``run.resume_id``."""

    @abc.abstractmethod
    def log(self, record: EpochRecord) -> None:
        """One epoch's metrics; :meth:`EpochRecord.scalars` names them."""

    def log_images(self, paths: Sequence[Path], epoch: int) -> None:
        """PNG files the run just wrote (optional: the default ignores them)."""
        return None

    def close(self) -> None:
        """Flush and finish (optional)."""
        return None


@dataclass
class Trackers:
    """The run's loggers, addressed as one."""

    loggers: dict[str, Logger] = field(default_factory=dict)

    def open(self, run_dir: Path, config: dict[str, Any], params: dict[str, Any]) -> list[str]:
        """Open every logger, continuing the tracked runs ``trackers.json`` remembers; returns
        the lines saying where each tracks."""
        path = run_dir / TRACKERS
        ids, folder = _tracked_ids(path)
        lines = []
        here = str(run_dir.resolve())
        if ids and folder != here:
            # A copied run folder: continuing the original's tracked runs would mix two runs.
            lines.append(f"{path} tracked the run in {folder}; this copy is tracked as a new run")
            ids = {}
        for name, logger in self.loggers.items():
            info = RunInfo(
                run_dir=run_dir, name=run_dir.name, config=config, params=params, resume_id=ids.get(name)
            )
            opened = logger.open(info)
            ids[name] = opened.id
            lines.append(opened.where)
        if self.loggers:
            path.write_text(json.dumps({FOLDER_KEY: here, **ids}, indent=2) + "\n")
        return lines

    def log(self, record: EpochRecord) -> None:
        for logger in self.loggers.values():
            logger.log(record)

    def log_images(self, paths: Sequence[Path], epoch: int) -> None:
        for logger in self.loggers.values():
            logger.log_images(paths, epoch)

    def close(self) -> None:
        for logger in self.loggers.values():
            logger.close()


def _tracked_ids(path: Path) -> tuple[dict[str, str], str]:
    """``trackers.json``: each tracker's id of this run ({} before the first tracked epoch), and
    the folder the ids belong to (files of genmod before 0.3 name none: taken as this one)."""
    if not path.is_file():
        return {}, ""
    try:
        ids = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path} is damaged ({type(exc).__name__}): delete it to track this run as a new one"
        ) from None
    if not isinstance(ids, dict) or not all(isinstance(v, str) for v in ids.values()):
        raise ConfigError(
            f"{path} is damaged (not a mapping of tracker ids): delete it to track this run anew"
        )
    folder = ids.pop(FOLDER_KEY, None)
    return ids, str(path.parent.resolve()) if folder is None else folder
