"""Where datasets live, and loading them once into tensors on the training device.

Training batches by indexing one device tensor with a shuffled index: no per-sample Python
transforms and no DataLoader workers in the hot loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from platformdirs import user_cache_dir

from genmod.config import DataConfig
from genmod.errors import DataError, one_line
from genmod.specs import DatasetSpec

DATA_DIR_ENV = "GENMOD_DATA_DIR"


# Binarized evaluation sets are drawn with this seed whatever the run's seed, so that the
# test set is the same 0/1 images in every run and NLLs are comparable; the validation images
# are chosen with it too, so every run holds out the same ones.
BINARIZE_SEED = 0


@dataclass(frozen=True)
class Data:
    train: torch.Tensor
    test: torch.Tensor
    validation: torch.Tensor | None = None
    """``data.validation`` images held out of the training set."""
    dynamic_binarization: bool = False
    """Whether each training batch must be binarized afresh (``data.binarize: dynamic``)."""


def binarize_once(images: torch.Tensor) -> torch.Tensor:
    """One fixed Bernoulli draw of every pixel."""
    return torch.bernoulli(images, generator=torch.Generator().manual_seed(BINARIZE_SEED))


def resolve_root(config: DataConfig) -> tuple[Path, bool]:
    """The data folder and whether a missing dataset may be downloaded into it.

    Explicit folders (``data.root``, ``$GENMOD_DATA_DIR``) are never written to; only the
    default user cache folder is.
    """
    if config.root is not None:
        return config.root, False
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]), False
    return Path(user_cache_dir("genmod")) / "data", True


def _check_finite(images: torch.Tensor, dataset: str, split: str) -> None:
    """Refuse NaN or infinite pixels now, naming the image, rather than as a NaN loss later."""
    bad = ~torch.isfinite(images.flatten(1)).all(dim=1)
    if bool(bad.any()):
        index = int(bad.nonzero()[0])
        raise DataError(
            f"image {index} of the {split} split of dataset '{dataset}' has non-finite pixel values "
            f"({int(bad.sum())} such images): fix or remove them"
        )


def load_data(spec: DatasetSpec, config: DataConfig, device: torch.device) -> Data:
    """Read both splits of ``spec`` (the first ``config.limit`` training images) onto ``device``."""
    root, download = resolve_root(config)
    try:
        train, test = (spec.build(root, split, download) for split in ("train", "test"))
    except Exception as exc:  # noqa: BLE001 - a missing or broken file or a failed download, from any loader
        reason = one_line(exc)
        where = f"point --data-dir (or data.root, or ${DATA_DIR_ENV}) at {spec.expects}"
        if isinstance(exc, FileNotFoundError):
            raise DataError(f"dataset '{spec.name}' not found in {root}: {where}") from None
        if download:
            raise DataError(
                f"dataset '{spec.name}' is not in {root} and downloading it failed ({reason}): {where}"
            ) from None
        raise DataError(f"cannot read dataset '{spec.name}' from {root}: {reason}") from None
    for split, images in (("train", train), ("test", test)):
        _check_finite(images, spec.name, split)
    validation = None
    if config.validation:
        if config.validation >= len(train):
            raise DataError(
                f"data.validation = {config.validation} leaves no training images of the {len(train)} "
                f"of '{spec.name}'; lower it"
            )
        chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(BINARIZE_SEED))
        validation, train = (
            train[chosen[: config.validation]],
            train[chosen[config.validation :].sort().values],
        )
    if config.limit is not None:
        if config.limit > len(train):
            raise DataError(
                f"data.limit = {config.limit} is larger than the {len(train)} training images "
                f"of '{spec.name}'; lower it or remove it"
            )
        train = train[: config.limit]
    if config.binarize != "none":
        test = binarize_once(test)
        validation = None if validation is None else binarize_once(validation)
    if config.binarize == "static":
        train = binarize_once(train)
    return Data(
        train.to(device),
        test.to(device),
        validation=None if validation is None else validation.to(device),
        dynamic_binarization=config.binarize == "dynamic",
    )
