"""Image sets larger than memory: shards written by ``genmod data pack``, read back by
MosaicML Streaming (``pip install 'genmod[streaming]'``).

A packed folder holds ``train/`` and ``test/``, each a set of MDS shards of 8-bit images, and
``genmod.json`` (their shape and counts). The training split is streamed: MosaicML Streaming
draws a deterministic shuffled order from the run's seed and the epoch, splits every global
batch across the processes of a launch, and starts an epoch at any sample. Each batch is
decoded in ``DataLoader`` workers. The test split is small and read into memory once.

The guarantee: a run resumed from a checkpoint taken at step ``s`` of epoch ``e`` (at the end
of an epoch, every ``train.checkpoint_every`` steps, or on Ctrl-C) continues with sample
``s * train.batch_size`` of epoch ``e``'s order, so its losses are those of the run that was
not stopped; what was trained after that checkpoint is done again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from genmod.errors import ConfigError, DataError

if TYPE_CHECKING:
    from streaming import StreamingDataset

INDEX = "genmod.json"
SPLITS = ("train", "test")
"""The splits a packed folder holds."""
# One canonical node: the sample order is the same for any number of processes and machines.
CANONICAL_NODES = 1


def _streaming() -> Any:
    try:
        import streaming
    except ImportError:
        raise ConfigError(
            "streaming datasets need MosaicML Streaming: pip install 'genmod[streaming]'"
        ) from None
    return streaming


def write_split(
    folder: Path, images: Iterable[torch.Tensor], shape: tuple[int, ...], shard_bytes: int
) -> int:
    """Write ``images`` (uint8 tensors of ``shape``) as MDS shards of about ``shard_bytes``
    into ``folder``; returns how many were written."""
    writer_class = _streaming().MDSWriter
    count = 0
    column = f"ndarray:uint8:{','.join(map(str, shape))}"
    with writer_class(out=str(folder), columns={"image": column}, size_limit=shard_bytes) as writer:
        for image in images:
            if tuple(image.shape) != shape or image.dtype != torch.uint8:
                raise ConfigError(
                    f"image {count} is {image.dtype} of shape {tuple(image.shape)}; every image must be uint8 of shape {shape}"
                )
            writer.write({"image": image.numpy()})
            count += 1
    return count


def pack(
    splits: dict[str, tuple[tuple[int, ...], Iterable[torch.Tensor]]],
    out: Path,
    source: str,
    shard_bytes: int,
) -> dict[str, int]:
    """Write each split's images (its shape, and the images one at a time: 8-bit ones, or
    float in [0, 1], rounded to 8 bits) as shards under ``out/SPLIT``, and ``genmod.json``;
    returns the images written per split."""
    shapes = {tuple(shape) for shape, _ in splits.values()}
    if len(shapes) > 1:
        raise ConfigError(
            f"the splits' images differ in shape ({', '.join(map(str, sorted(shapes)))}): give them one"
        )
    counts = {}
    for split, (shape, images) in splits.items():
        as_bytes = (
            image if image.dtype == torch.uint8 else image.mul(255).round().to(torch.uint8)
            for image in images
        )
        counts[split] = write_split(out / split, as_bytes, shape, shard_bytes)
    index = {"shape": list(shapes.pop()), "images": counts, "source": source}
    (out / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return counts


def pack_dataset(
    source: str | Path,
    out: str | Path,
    *,
    root: str | Path | None = None,
    limit: int | None = None,
    shard_mb: float = 64.0,
    plugins: Sequence[str | Path] = (),
) -> tuple[dict[str, int], tuple[int, ...]]:
    """Write a registered dataset (``"mnist"``, read from ``root``, default as for a run) or a
    folder with ``train/`` and ``test/`` image files as shards of about ``shard_mb`` MB into
    the new folder ``out``, which ``data.name: streaming`` reads; ``limit`` packs the first
    training images only. Returns the images written per split and their shape. Written into
    a staging folder renamed at the end: a failed pack leaves no ``out`` behind."""
    import itertools
    import os
    import shutil

    out = Path(out)
    if out.exists():
        raise ConfigError(f"{out} already exists: choose a new folder to pack into")
    if limit is not None and limit < 1 or shard_mb <= 0:
        raise ConfigError("pack at least one image, into shards of a positive size")
    folder = Path(source)
    splits: dict[str, tuple[tuple[int, ...], Iterable[torch.Tensor]]]
    if folder.is_dir():
        from genmod.builtins.datasets import image_files

        try:
            splits = {split: image_files(folder / split) for split in SPLITS}
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot pack {folder}: {exc}") from None
    else:
        from genmod.api import registry
        from genmod.config import DataConfig
        from genmod.data import resolve_root

        spec = registry(plugins).dataset(str(source))
        where = Path(root) if root is not None else resolve_root(DataConfig(name=str(source)))[0]
        splits = {}
        for split in SPLITS:
            images = spec.build(where, split, False)
            if isinstance(images, StreamingImages):
                raise ConfigError(f"dataset '{source}' is streamed already: pack its source instead")
            splits[split] = (tuple(images.shape[1:]), iter(images))
    shape, train = splits["train"]
    splits["train"] = (shape, itertools.islice(train, limit))
    staging = out.with_name(f".{out.name}.packing-{os.getpid()}")
    try:
        counts = pack(splits, staging, str(source), int(shard_mb * 2**20))
        staging.rename(out)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot pack {source}: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts, shape


def read_index(folder: Path) -> dict[str, Any]:
    """The packed folder's ``genmod.json``, checked once against the shards it describes;
    ``FileNotFoundError`` when ``folder`` is not one, ``ValueError`` naming the damaged file.

    Streaming reads its shards in ``DataLoader`` workers, where a damaged one would fail deep
    inside a worker: every file is checked here, up front, instead.
    """
    path = Path(folder) / INDEX
    if not path.is_file():
        raise FileNotFoundError(path)
    index = _json(path)
    try:
        shape = [int(d) for d in index["shape"]]
        counts = {split: int(index["images"][split]) for split in SPLITS}
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"{path} lacks the images' shape or a split's count: pack the folder again"
        ) from None
    if len(shape) != 3 or not all(0 < d <= 2**16 for d in shape):
        raise ValueError(f"{path} declares images of shape {shape}: pack the folder again")
    for split, count in counts.items():
        held = _check_shards(Path(folder) / split)
        if held != count:
            raise ValueError(
                f"{path} declares {count} {split} images, but the shards hold {held}: pack it again"
            )
    return {**index, "shape": shape, "images": counts}


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is damaged ({type(exc).__name__}): pack the folder again") from None


def _check_shards(folder: Path) -> int:
    """The images a split's shards hold, after checking that each listed shard is there, whole."""
    path = folder / "index.json"
    shards = _json(path).get("shards") if path.is_file() else None
    if not isinstance(shards, list):
        raise ValueError(f"{path} is missing or lists no shards: pack the folder again")
    total = 0
    for shard in shards:
        try:
            name, size, samples = (
                shard["raw_data"]["basename"],
                int(shard["raw_data"]["bytes"]),
                int(shard["samples"]),
            )
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path} has a damaged shard entry: pack the folder again") from None
        file = folder / Path(name).name
        if not file.is_file() or file.stat().st_size != size:
            found = f"{file.stat().st_size} bytes" if file.is_file() else "missing"
            raise ValueError(f"shard {file} is {found}; {path} lists {size} bytes: pack the folder again")
        total += samples
    return total


def _dataset(folder: Path, **options: Any) -> StreamingDataset:
    dataset: StreamingDataset = _streaming().StreamingDataset(
        local=str(folder), num_canonical_nodes=CANONICAL_NODES, **options
    )
    return dataset


def _images(rows: list[dict[str, Any]]) -> torch.Tensor:
    return torch.from_numpy(np.stack([row["image"] for row in rows]))


def _read(dataset: StreamingDataset, indices: range) -> torch.Tensor:
    """The images at ``indices`` of a packed split, in one tensor."""
    return _images([dataset.get_item(i) for i in indices])


class StreamingImages:
    """The training split of a packed folder, streamed a batch at a time.

    It stands in for the in-memory training tensor: ``len()``, ``shape`` and ``[:n]`` (the
    first ``n`` images, for checks) work alike, and :meth:`batches` gives one epoch's batches.
    """

    def __init__(self, folder: Path, count: int, shape: tuple[int, ...]) -> None:
        self.folder = folder
        self.shape = torch.Size((count, *shape))
        self._dataset: StreamingDataset | None = None
        self._made_for: tuple[int, int] | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: slice) -> torch.Tensor:
        return _read(self._dataset or _dataset(self.folder / "train"), range(len(self))[index])

    def batches(
        self,
        epoch: int,
        start: int,
        batch_size: int,
        seed: int,
        world: int,
        workers: int,
        device: torch.device,
    ) -> Iterator[torch.Tensor]:
        """This process's share of each global batch of ``epoch`` (from 1), from batch ``start``
        on, in the order seeded by ``seed``, decoded by ``workers`` processes; each on ``device``."""
        from torch.utils.data import DataLoader

        share = batch_size // world
        if self._dataset is None or self._made_for != (share, seed):
            self._dataset = _dataset(self.folder / "train", shuffle=True, shuffle_seed=seed, batch_size=share)
            self._made_for = (share, seed)
        # Streaming counts epochs itself and takes a state for an epoch it has passed as stale;
        # genmod's epoch, checkpointed, is the one that counts.
        self._dataset.next_epoch = epoch - 1
        self._dataset.load_state_dict(
            {
                "epoch": epoch - 1,
                "sample_in_epoch": start * batch_size,
                "num_canonical_nodes": CANONICAL_NODES,
                "shuffle_seed": seed,
                "initial_physical_nodes": 1,
            }
        )
        loader = DataLoader(
            self._dataset,
            batch_size=share,
            num_workers=workers,
            collate_fn=_images,
            # Its own generator for the workers' seeds, so that starting a loader (every
            # epoch, every resume) leaves the training's random draws alone.
            generator=torch.Generator().manual_seed(seed),
        )
        for batch in loader:
            yield batch.to(device, non_blocking=True)


def load_split(folder: Path, split: str) -> torch.Tensor:
    """A whole packed split in memory (the test set), in its packed order."""
    dataset = _dataset(folder / split)
    return _read(dataset, range(dataset.size))
