"""Built-in datasets: torchvision's MNIST-format sets, and users' own images as a tensor file
or a folder of image files. Each split is read once into one tensor, uint8 where the files are
8-bit."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import torch
from PIL import Image
from rich.console import Console
from rich.progress import track

from genmod.errors import one_line
from genmod.specs import DatasetSpec
from genmod.streaming import StreamingImages, load_split, read_index

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _check_idx(path: Path, magic: int, item_bytes: int) -> None:
    """Refuse a truncated file or one that is not IDX, before torchvision trips over it."""
    with path.open("rb") as handle:
        header = handle.read(4 * (magic % 256 + 1))
    header_size = len(header)
    found = int.from_bytes(header[:4], "big") if header_size >= 4 else None
    if found != magic:
        raise ValueError(f"{path.name} has magic number {found}, not {magic}: it is not an MNIST IDX file")
    count = int.from_bytes(header[4:8], "big")
    expected = header_size + count * item_bytes
    if path.stat().st_size != expected:
        raise ValueError(f"{path.name} is truncated: {path.stat().st_size} bytes, expected {expected}")


def _load_idx(name: str, root: Path, split: str, download: bool) -> torch.Tensor:
    # torchvision is imported here, not at the top: it takes a second to import, and
    # `genmod list` loads this plugin without reading any data.
    from torchvision import datasets

    cls = getattr(datasets, name)
    raw = Path(root) / cls.__name__ / "raw"
    prefix = "train" if split == "train" else "t10k"
    images, labels = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
    if images.exists() and labels.exists():
        _check_idx(images, 2051, 28 * 28)
        _check_idx(labels, 2049, 1)
    try:
        dataset = cls(root=str(root), train=split == "train", download=download)
    except RuntimeError as exc:
        if "not found" in str(exc):
            raise FileNotFoundError(str(exc)) from exc
        raise
    pixels: torch.Tensor = dataset.data
    return pixels.unsqueeze(1)


def _as_images(tensor: object, where: str) -> torch.Tensor:
    """Check the shape/range contract: (N, C, H, W) or (N, H, W); uint8, or float in [0, 1]."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{where} is a {type(tensor).__name__}, not a tensor")
    if tensor.dim() == 3:
        tensor = tensor.unsqueeze(1)
    if tensor.dim() != 4 or 0 in tensor.shape:
        raise ValueError(
            f"{where} has shape {tuple(tensor.shape)}; expected (N, C, H, W) or (N, H, W), none of them 0"
        )
    if tensor.shape[1] not in (1, 3):
        raise ValueError(f"{where} has {tensor.shape[1]} channels; images have 1 (grey) or 3 (RGB)")
    if tensor.untyped_storage().nbytes() < tensor.numel() * tensor.element_size():
        # Strides that repeat one stored value can declare any shape in a file of a few bytes.
        raise ValueError(
            f"{where} declares {tensor.numel():,} pixels but holds {tensor.untyped_storage().nbytes():,} "
            "bytes: store the images themselves, not a view that repeats them"
        )
    if tensor.dtype == torch.uint8:
        return tensor
    if not tensor.is_floating_point():
        raise ValueError(f"{where} has dtype {tensor.dtype}; expected uint8 (0-255) or float in [0, 1]")
    low, high = float(tensor.min()), float(tensor.max())
    if low < 0 or high > 1:
        raise ValueError(f"{where} has values in [{low:.3g}, {high:.3g}]; float images must lie in [0, 1]")
    return tensor.float()


def _load_tensor_file(root: Path, split: str, download: bool) -> torch.Tensor:
    path = Path(root)
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for files it cannot read
        raise ValueError(
            f"{path.name} is not a tensor file torch.load can read ({type(exc).__name__})"
        ) from None
    if not isinstance(content, dict) or split not in content:
        raise ValueError(f"{path.name} must hold a dict with 'train' and 'test' image tensors")
    return _as_images(content[split], f"{path.name}['{split}']")


def image_files(folder: Path) -> tuple[tuple[int, int, int], Iterator[torch.Tensor]]:
    """The shape of the images under ``folder`` (from the first) and an iterator reading them
    one at a time as uint8 (C, H, W) tensors: packing a folder never holds it in memory."""
    if not folder.is_dir():
        raise FileNotFoundError(folder)
    paths = _image_paths(folder)
    if not paths:
        raise ValueError(f"{folder} holds no image files ({', '.join(sorted(_IMAGE_SUFFIXES))})")
    with _open_image(paths[0]) as first:
        mode, size = _colour(first), first.size
    channels = 1 if mode == "L" else 3

    def read() -> Iterator[torch.Tensor]:
        # Thousands of files take a while: a bar on a terminal, nothing in logs and pipes.
        console = Console(stderr=True)
        reading = track(
            paths, f"reading {folder}", console=console, transient=True, disable=not console.is_terminal
        )
        for path in reading:
            with _open_image(path) as image:
                if image.size != size:
                    raise ValueError(
                        f"{path} is {image.size[0]}x{image.size[1]}, but {paths[0].name} is {size[0]}x{size[1]}: all images must have one size"
                    )
                if _colour(image) != mode:
                    words = {"L": "grey", "RGB": "colour"}
                    raise ValueError(
                        f"{path} is {words[_colour(image)]}, but {paths[0].name} is {words[mode]}: all images "
                        "must be grey or all colour (convert them first)"
                    )
                try:
                    pixels = torch.frombuffer(bytearray(image.convert(mode).tobytes()), dtype=torch.uint8)
                except (OSError, ValueError) as exc:
                    raise ValueError(f"{path} is not a readable image ({one_line(exc, 80)})") from None
            yield pixels.view(size[1], size[0], channels).permute(2, 0, 1)

    return (channels, size[1], size[0]), read()


def _colour(image: Image.Image) -> str:
    """``L`` for grey images (any bit depth), ``RGB`` for the others."""
    return "L" if image.mode in ("1", "L", "LA", "I", "I;16") else "RGB"


def _open_image(path: Path) -> Image.Image:
    """Open an image file, naming it when it is not one (empty, truncated, another format)."""
    try:
        return Image.open(path)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path} is not a readable image ({one_line(exc, 80)})") from None


def _image_paths(folder: Path) -> list[Path]:
    # Regular files only: reading a named pipe would wait forever.
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())


def _load_image_folder(root: Path, split: str, download: bool) -> torch.Tensor:
    """One uint8 tensor, filled image by image: never a second copy of the split in memory."""
    folder = Path(root) / split
    shape, images = image_files(folder)
    split_images = torch.empty((len(_image_paths(folder)), *shape), dtype=torch.uint8)
    for index, image in enumerate(images):
        split_images[index] = image
    return split_images


def _load_packed(root: Path, split: str, download: bool) -> torch.Tensor | StreamingImages:
    index = read_index(root)
    shape = tuple(index["shape"])
    if split == "train":
        return StreamingImages(Path(root), index["images"]["train"], shape)
    return load_split(Path(root), split)


def _idx_layout(folder: str) -> str:
    return "the folder holding " + ", ".join(f"{folder}/raw/{f}" for f in _IDX_FILES)


DATASETS = (
    DatasetSpec(
        name="mnist",
        build=partial(_load_idx, "MNIST"),
        expects=_idx_layout("MNIST"),
        description="MNIST digits, 60k train / 10k test, 1x28x28 8-bit grey levels.",
    ),
    DatasetSpec(
        name="fashion-mnist",
        build=partial(_load_idx, "FashionMNIST"),
        expects=_idx_layout("FashionMNIST"),
        description="Fashion-MNIST clothing, 60k train / 10k test, 1x28x28 8-bit grey levels.",
    ),
    DatasetSpec(
        name="tensor-file",
        build=_load_tensor_file,
        expects="a .pt file holding {'train': images, 'test': images}, each (N, C, H, W) or (N, H, W), uint8 or float in [0, 1]",
        description="Your images as tensors in a .pt file (data.root is the file).",
    ),
    DatasetSpec(
        name="image-folder",
        build=_load_image_folder,
        expects="a folder with train/ and test/ subfolders of image files, all of one size",
        description="Your images as PNG/JPEG files under ROOT/train and ROOT/test (grey or RGB).",
    ),
    DatasetSpec(
        name="streaming",
        build=_load_packed,
        expects="a folder written by `genmod data pack` (genmod.json, train/ and test/ shards)",
        description="Shards from `genmod data pack`, streamed by MosaicML Streaming (larger than memory).",
    ),
)
