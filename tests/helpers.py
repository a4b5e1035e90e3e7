"""Shared helpers for the CLI-level tests."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from genmod.cli import app


def genmod(*args: object, columns: int | None = None):
    """``genmod ARGS`` in this process; output as wide as the suite's pinned terminal (see
    conftest), or ``columns`` wide for a test of how output fits a narrow terminal."""
    env = None if columns is None else {"COLUMNS": str(columns)}
    return CliRunner(env=env).invoke(app, [str(a) for a in args])


# The reference model on the first 1,000 training images, on the CPU: ``genmod run`` arguments.
SMALL = ("mlp-vae", "--device", "cpu", "--set", "data.limit=1000")


def small_run(out: Path, *extra: object, columns: int | None = None):
    return genmod("run", *SMALL, "--out", out, *extra, columns=columns)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def losses(out: Path) -> list[dict]:
    """The metrics without wall-clock times, which never repeat."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in metrics(out)]


def assert_resume_is_bit_exact(whole: Path, split: Path, *run_args: object, epochs: int = 2) -> str:
    """``genmod run RUN_ARGS`` for ``epochs`` epochs into ``whole``, and for one epoch into
    ``split`` continued with ``--resume``: both give the same metrics and the same weights.
    Returns what the whole run printed."""
    printed = []
    for out, n in ((whole, epochs), (split, 1)):
        result = genmod("run", *run_args, "--epochs", n, "--out", out)
        assert result.exit_code == 0, result.output
        printed.append(result.output)
    resumed = genmod("run", "--resume", split, "--epochs", epochs)
    assert resumed.exit_code == 0, resumed.output
    assert losses(split) == losses(whole)
    a = torch.load(whole / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(split / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    return printed[0]


def pip_install(package: Path | str, target: Path | str) -> list[str]:
    """The command that installs ``package`` into ``target`` the way pip installs any plugin,
    without touching the environment that runs the tests."""
    return [
        sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
        "--target", str(target), str(package),
    ]  # fmt: skip


EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb", "streaming": "streaming",
          "nbclient": "notebook", "nbformat": "notebook", "optuna": "optuna"}  # fmt: skip
"""Each optional module the tests use, and genmod's extra that installs it."""


def optional(module: str) -> None:
    """Skip the calling test when ``module`` (an optional integration) is not installed, naming
    the extra that installs it; in CI (``$CI``) fail instead: there every extra is installed."""
    try:
        importlib.import_module(module)
    except ImportError:
        extra = EXTRAS[module]
        if os.environ.get("CI"):
            pytest.fail(
                f"{module} is not installed, and CI installs every extra: pip install -e '.[{extra}]'"
            )
        pytest.skip(f"needs the {extra} extra: pip install -e '.[{extra}]'")


def cli(*args: object, **kwargs: Any) -> subprocess.Popen:
    """``genmod ARGS`` in a process of its own, for tests that signal or kill it."""
    return subprocess.Popen(
        [sys.executable, "-m", "genmod", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        **kwargs,
    )


def checkpoint_epoch(path: Path) -> int:
    """The epochs a checkpoint holds; -1 while none is written."""
    import torch

    try:
        return torch.load(path, weights_only=True)["epoch"]
    except Exception:  # noqa: BLE001 - not written yet
        return -1
