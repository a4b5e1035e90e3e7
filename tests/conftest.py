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


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test runs in its own folder, with the shared data and no stray plugins.

    Only tests that ask for ``data_dir`` (or run genmod on MNIST) need the data on disk: the
    unit tests run offline on a fresh clone without it.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENMOD_DATA_DIR", str(DATA_DIR))
    monkeypatch.delenv("GENMOD_PLUGINS", raising=False)


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry()


@pytest.fixture(scope="session")
def mnist(registry: Registry, data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) images of the real MNIST as float tensors in [0, 1]."""
    spec = registry.dataset("mnist")
    return as_float(spec.build(data_dir, "train", False)), as_float(spec.build(data_dir, "test", False))
