"""torchvision's MNIST-format datasets, read once into one tensor."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from torchvision import datasets

from genmod.specs import DatasetSpec

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _load(cls: type[datasets.MNIST], root: Path, split: str, download: bool) -> torch.Tensor:
    try:
        dataset = cls(root=str(root), train=split == "train", download=download)
    except RuntimeError as exc:
        if "not found" in str(exc):
            raise FileNotFoundError(str(exc)) from exc
        raise
    return dataset.data.unsqueeze(1).float().div_(255)


DATASETS = (
    DatasetSpec(
        name="mnist",
        load=partial(_load, datasets.MNIST),
        files=tuple(f"MNIST/raw/{f}" for f in _IDX_FILES),
        description="MNIST digits, 60k train / 10k test, 1x28x28 grey levels in [0, 1].",
    ),
    DatasetSpec(
        name="fashion-mnist",
        load=partial(_load, datasets.FashionMNIST),
        files=tuple(f"FashionMNIST/raw/{f}" for f in _IDX_FILES),
        description="Fashion-MNIST clothing, 60k train / 10k test, 1x28x28 grey levels in [0, 1].",
    ),
)
