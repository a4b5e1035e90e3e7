"""Where datasets live, and loading them once into tensors on the training device.

Training batches by indexing one device tensor with a shuffled index: no per-sample Python
transforms and no DataLoader workers in the hot loop. 8-bit images stay ``uint8`` in memory
(a quarter of float32's bytes: 47 MB rather than 188 MB for MNIST's training set) and become
float in [0, 1] one batch at a time, on the device, by :func:`as_float`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from platformdirs import user_cache_dir

from genmod.config import DataConfig
from genmod.errors import DataError, one_line
from genmod.specs import DatasetSpec
from genmod.streaming import StreamingImages

TrainingImages = torch.Tensor | StreamingImages
"""A training split: in memory, or streamed from shards when larger than memory."""

DATA_DIR_ENV = "GENMOD_DATA_DIR"


# Binarized evaluation sets are drawn with this seed whatever the run's seed, so that the
# test set is the same 0/1 images in every run and NLLs are comparable; the validation images
# are chosen with it too, so every run holds out the same ones.
BINARIZE_SEED = 0


def as_float(images: torch.Tensor) -> torch.Tensor:
    """Images as float in [0, 1]: ``uint8`` ones divided by 255, float ones as they are."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


@dataclass(frozen=True)
class Data:
    """A dataset's splits as stored: ``uint8`` where the source is 8-bit (binarized images as 0
    and 255), else float in [0, 1]; :meth:`as_float` gives them all as float."""

    train: TrainingImages
    test: torch.Tensor
    validation: torch.Tensor | None = None
    """``data.validation`` images held out of the training set."""
    dynamic_binarization: bool = False
    """Whether each training batch must be binarized afresh (``data.binarize: dynamic``)."""
    levels: int | None = None
    """The values each pixel takes as training feeds it: 2 when binarized, 256 for 8-bit
    images, ``None`` for continuous ones (what :class:`~genmod.ModelContext` tells a model)."""

    def as_float(self) -> Data:
        """The same splits as float in [0, 1] (for notebooks: four times the memory)."""
        validation = None if self.validation is None else as_float(self.validation)
        train = self.train if isinstance(self.train, StreamingImages) else as_float(self.train)
        return replace(self, train=train, test=as_float(self.test), validation=validation)


def binarize_once(images: torch.Tensor) -> torch.Tensor:
    """One fixed Bernoulli draw of every pixel, in the images' own storage (0/255 for uint8)."""
    drawn = torch.bernoulli(as_float(images), generator=torch.Generator().manual_seed(BINARIZE_SEED))
    return drawn.mul_(255).to(torch.uint8) if images.dtype == torch.uint8 else drawn


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
    if not images.is_floating_point():
        return
    bad = ~torch.isfinite(images.flatten(1)).all(dim=1)
    if bool(bad.any()):
        index = int(bad.nonzero()[0])
        raise DataError(
            f"image {index} of the {split} split of dataset '{dataset}' has non-finite pixel values "
            f"({int(bad.sum())} such images): fix or remove them"
        )


def _streamed(train: StreamingImages, test: torch.Tensor, config: DataConfig, device: torch.device) -> Data:
    """A streamed training set with its test set in memory; what needs the training images in
    memory is refused in one line."""
    needs_memory = {
        "data.validation": config.validation,
        "data.limit": config.limit,
        "data.binarize: static": config.binarize == "static",
    }
    for setting, used in needs_memory.items():
        if used:
            raise DataError(
                f"{setting} needs the training images in memory, and data.name {config.name} streams "
                f"them: pack the subset you want with `genmod data pack`, or drop {setting.split(':')[0]}"
            )
    if config.binarize == "dynamic":
        test = binarize_once(test)
    return Data(
        train,
        test.to(device),
        dynamic_binarization=config.binarize == "dynamic",
        levels=2 if config.binarize != "none" else 256 if test.dtype == torch.uint8 else None,
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
            inside = root / "data"  # --data-dir ../shared for ../shared/data
            hint = f" (did you mean {inside}?)" if inside.is_dir() else ""
            raise DataError(f"dataset '{spec.name}' not found in {root}{hint}: {where}") from None
        if download:
            raise DataError(
                f"dataset '{spec.name}' is not in {root} and downloading it failed ({reason}): {where}"
            ) from None
        raise DataError(f"cannot read dataset '{spec.name}' from {root}: {reason}") from None
    if isinstance(test, StreamingImages):
        raise DataError(
            f"dataset '{spec.name}' streams its test split: genmod holds the test split in memory"
        )
    if isinstance(train, StreamingImages):
        return _streamed(train, test, config, device)
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
        levels=2 if config.binarize != "none" else 256 if train.dtype == torch.uint8 else None,
    )
