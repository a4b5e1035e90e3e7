from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from genmod.data import as_float
from genmod.plugins import Registry, load_registry

REPO = Path(__file__).resolve().parents[1]
# Tests never download: they read the real MNIST from $GENMOD_DATA_DIR, by default the
# shared copy beside the checkout.
DATA_DIR = Path(os.environ.get("GENMOD_DATA_DIR") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real MNIST, for the tests that train or evaluate on it (they fail, not skip, without it)."""
    if not (DATA_DIR / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.fail(f"MNIST not found under {DATA_DIR}: set GENMOD_DATA_DIR to a folder holding MNIST/raw/")
    return DATA_DIR


# Variables of the user's shell that would change what genmod or its trackers do.
USER_SETTINGS = ("GENMOD_", "WANDB_", "MLFLOW_", "FORCE_COLOR", "TERM")
# The terminal every test sees, whatever the shell running pytest has: wide enough that no
# message wraps, no colour codes. Tests of narrow terminals ask for their width (helpers.genmod).
TERMINAL = {"COLUMNS": "200", "LINES": "50", "NO_COLOR": "1"}


@pytest.fixture(autouse=True)
def _isolated(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Every test runs in its own folder, with the shared data, no stray plugins, a pinned
    terminal, its own genmod config folder (trusted plugin files), the session's features
    folder and none of the user's
    genmod or tracker settings: the suite passes whatever shell and home it is started from.

    Only tests that ask for ``data_dir`` (or run genmod on MNIST) need the data on disk: the
    unit tests run offline on a fresh clone without it.
    """
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(USER_SETTINGS):
            monkeypatch.delenv(name)
    for name, value in TERMINAL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GENMOD_DATA_DIR", str(DATA_DIR))
    monkeypatch.setenv("GENMOD_CONFIG_DIR", str(tmp_path_factory.mktemp("genmod-config")))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path_factory.getbasetemp() / "matplotlib"))
    # One features folder for the session: cached reference statistics are shared by the
    # tests, never written into the user's cache.
    monkeypatch.setenv("GENMOD_FEATURES_DIR", str(tmp_path_factory.getbasetemp() / "features"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which check each shipped model's reproduction test applied (bit for bit or within
    a tolerance): it depends on the machine the suite runs on."""
    checks = [
        (report.nodeid.split("[")[-1].rstrip("]"), value)
        for reports in terminalreporter.stats.values()
        for report in reports
        for name, value in getattr(report, "user_properties", ())
        if name == "check" and getattr(report, "when", "") == "call"
    ]
    if checks:
        terminalreporter.section("shipped models: reproduction checks")
        for model, check in checks:
            terminalreporter.write_line(f"{model}: {check}")


# Tests that read the real MNIST through a fixture are ``slow``, like those marked so (they
# train on it, start processes or retrain a shipped model); the rest, with the mock model
# (tests/mock), is the contributor's fast loop: pytest -m "not slow".
ON_MNIST = {"data_dir", "mnist", "run_dir"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if ON_MNIST & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry()


@pytest.fixture(scope="session")
def mnist(registry: Registry, data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) images of the real MNIST as float tensors in [0, 1]."""
    spec = registry.dataset("mnist")
    return as_float(spec.build(data_dir, "train", False)), as_float(spec.build(data_dir, "test", False))
