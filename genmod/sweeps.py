"""``genmod sweep``: a grid of ``--set`` overrides, each run in its own folder, some at once.

Each run is a ``genmod run`` process of its own, so a crash, a Ctrl-C or a full disk in one
never corrupts another, and a second call continues the unfinished runs and skips the finished
ones (each folder's checkpoint says where it stands). The usable cores are divided among the
runs that train at once (``OMP_NUM_THREADS``): more threads than cores would make the runs
wait on one another at every parallel region (``benchmarks/shared_cores.py``).
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from genmod.errors import ConfigError
from genmod.openmp import usable_cores

# Commas split values, except inside brackets or braces (a list value: [0,10]).
_VALUES = re.compile(r",(?![^\[\{]*[\]\}])")


@dataclass(frozen=True)
class SweepRun:
    name: str
    """The folder's name: its assignments, e.g. ``lr=3e-4_latent_dim=10``."""
    sets: tuple[str, ...]
    """Its ``--set`` overrides."""


@dataclass(frozen=True)
class Sweep:
    """What :func:`sweep` trained."""

    folder: Path
    """The runs' folders are inside, and their logs in ``logs/``."""
    runs: tuple[SweepRun, ...]
    failed: int
    """How many runs failed this time."""


def grid(assignments: Sequence[str]) -> list[SweepRun]:
    """The runs of every combination of ``KEY=V1,V2,...`` assignments, in order."""
    axes: list[list[tuple[str, str]]] = []
    for assignment in assignments:
        key, sep, values = assignment.partition("=")
        if not sep or not key or not values:
            raise ConfigError(
                f"--set {assignment}: write KEY=VALUE or KEY=V1,V2,... (e.g. train.lr=1e-3,3e-4)"
            )
        axes.append([(key, value) for value in _VALUES.split(values)])
    if not axes:
        raise ConfigError("a sweep needs at least one --set KEY=V1,V2,...")
    runs = []
    for combination in itertools.product(*axes):
        name = "_".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in combination)
        runs.append(SweepRun(re.sub(r"[^\w=.,+-]", "-", name), tuple(f"{k}={v}" for k, v in combination)))
    if len({run.name for run in runs}) < len(runs):
        raise ConfigError("two --set keys end in the same name: sweep them under distinct names")
    return runs


def finished(run_dir: Path) -> bool:
    """Whether a run folder trained every epoch its config asks for (or stopped early)."""
    from genmod.run_index import summarize

    try:
        summary = summarize(run_dir)
    except Exception:  # noqa: BLE001 - a damaged folder is resumed, and its own error shows
        return False
    return summary is not None and summary.epochs_done >= summary.epochs_planned


def sweep(
    model: str,
    axes: Sequence[str],
    out: str | Path | None = None,
    *,
    parallel: int = 1,
    epochs: int | None = None,
    device: str | None = None,
    data_dir: str | Path | None = None,
    plugins: Sequence[str | Path] = (),
    trust_plugins: bool = False,
    log: Callable[[str], None] = print,
) -> Sweep:
    """Train every combination of the ``axes`` (``"train.lr=1e-3,3e-4"``, as ``genmod sweep
    --set`` spells them) of ``model``'s recipe, each run in its own folder under ``out``
    (default ``sweeps/MODEL``), ``parallel`` at a time with the usable cores divided among
    them; ``epochs``, ``device``, ``data_dir``, ``plugins`` and ``trust_plugins`` go to every
    run as to :func:`genmod.train`. A second call continues the unfinished runs and skips the
    finished ones. A Ctrl-C or SIGTERM is passed to every run (each checkpoints and stops) and
    raises ``KeyboardInterrupt`` once they have. ``log`` gets a line as each run starts and
    ends. Returns the sweep's folder, runs and how many failed (their logs are in ``logs/``)."""
    runs = grid(axes)
    out = Path(out) if out is not None else Path("sweeps") / model
    if parallel < 1:
        raise ConfigError(f"parallel = {parallel}: train at least one run at a time")
    extra = [
        *(["--epochs", str(epochs)] if epochs is not None else []),
        *(["--device", device] if device else []),
        *(["--data-dir", str(data_dir)] if data_dir else []),
        *(w for p in plugins for w in ("--plugin", str(p))),
        *(["--trust-plugins"] if trust_plugins else []),
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    threads = max(1, usable_cores() // parallel)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    pending = [run for run in runs if not finished(out / run.name)]
    skipped = len(runs) - len(pending)
    if skipped:
        log(f"{skipped} of {len(runs)} runs are finished already; training the other {len(pending)}")
    active: dict[str, subprocess.Popen[bytes]] = {}
    failed = 0
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in active.values():
            process.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while pending or active:
            while pending and len(active) < parallel and not stopping:
                run = pending.pop(0)
                folder = out / run.name
                resume = (folder / "checkpoint.pt").is_file()
                # A folder without a checkpoint holds only a start that failed: begin it again.
                command = (
                    ["run", "--resume", str(folder)]
                    if resume
                    else [
                        "run",
                        model,
                        *(w for s in run.sets for w in ("--set", s)),
                        "--out",
                        str(folder),
                        "--force",
                    ]
                )
                handle = (out / "logs" / f"{run.name}.log").open("ab")
                active[run.name] = subprocess.Popen(
                    [sys.executable, "-m", "genmod", *command, *extra], stdout=handle, stderr=handle, env=env
                )
                log(f"{'resuming' if resume else 'started'} {run.name} ({threads} threads)")
            time.sleep(0.2)
            for name, process in list(active.items()):
                code = process.poll()
                if code is None:
                    continue
                del active[name]
                if code == 0:
                    log(f"finished {name}")
                elif not stopping:
                    failed += 1
                    log(f"failed {name} (exit {code}): see {out / 'logs' / (name + '.log')}")
            if stopping and not active:
                raise KeyboardInterrupt
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return Sweep(out, tuple(runs), failed)
