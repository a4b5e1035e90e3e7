"""``genmod features train``: the classifiers whose features genmod's MNIST-like FIDs compare.

A :class:`~genmod.features.DigitFeatures` network is trained on a dataset's training split
with its labels (torchvision's copy in the data folder), on grey images and, half of the
time, on the same images binarized, so that the samples of binary models have features in
the range the network was trained on. The weights are stored in float16 when that changes no
test prediction; the test accuracy is reported, never used to choose anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from genmod.errors import ConfigError, DataError
from genmod.features import DigitFeatures

TORCHVISION_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
"""The datasets a classifier can be trained on, and torchvision's class for each."""


@dataclass(frozen=True)
class TrainedFeatures:
    path: Path
    sha256: str
    test_accuracy: float
    float16: bool


def _split(name: str, root: Path, train: bool) -> tuple[Tensor, Tensor]:
    from torchvision import datasets

    try:
        data = getattr(datasets, TORCHVISION_NAMES[name])(root=str(root), train=train, download=False)
    except RuntimeError:
        raise DataError(
            f"dataset '{name}' not found in {root}: point --data-dir at the folder holding "
            f"{TORCHVISION_NAMES[name]}/raw"
        ) from None
    return data.data.unsqueeze(1), data.targets


def _accuracy(net: DigitFeatures, images: Tensor, labels: Tensor) -> tuple[float, Tensor]:
    with torch.no_grad():
        predicted = torch.cat([net.logits(x.float() / 255).argmax(1) for x in images.split(1000)])
    return (predicted == labels).float().mean().item(), predicted


def train_features(
    dataset: str,
    out: str | Path | None = None,
    *,
    epochs: int = 4,
    seed: int = 0,
    root: str | Path | None = None,
    on_epoch: Callable[[int, float], None] = lambda epoch, loss: None,
) -> TrainedFeatures:
    """Train the feature classifier of ``dataset`` (mnist or fashion-mnist, torchvision's copy
    with labels in ``root``, default as for a run) for ``epochs`` from ``seed``, and write its
    weights to ``out`` (default: the features folder, where ``genmod eval`` finds them).
    ``on_epoch(epoch, mean cross-entropy)`` is called after each epoch."""
    from genmod.config import DataConfig
    from genmod.data import resolve_root
    from genmod.features import NETWORKS, features_dir

    if dataset not in TORCHVISION_NAMES:
        raise ConfigError(f"no feature classifier for '{dataset}': use {' or '.join(TORCHVISION_NAMES)}")
    if epochs < 1:
        raise ConfigError(f"epochs = {epochs}: train at least one epoch")
    folder = Path(root) if root is not None else resolve_root(DataConfig(name=dataset))[0]
    path = Path(out) if out is not None else features_dir() / NETWORKS[dataset].file
    name = dataset
    torch.manual_seed(seed)
    images, labels = _split(name, folder, train=True)
    net = DigitFeatures()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for epoch in range(1, epochs + 1):
        net.train()
        total = 0.0
        order = torch.randperm(len(images))
        for batch, index in enumerate(order.split(128)):
            x = images[index].float() / 255
            if batch % 2:
                x = torch.bernoulli(x)
            loss = F.cross_entropy(net.logits(x), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        on_epoch(epoch, total / len(images))
    net.eval()
    test_images, test_labels = _split(name, folder, train=False)
    accuracy, predicted = _accuracy(net, test_images, test_labels)
    half = {key: value.half() for key, value in net.state_dict().items()}
    as_half = DigitFeatures().eval()
    as_half.load_state_dict({key: value.float() for key, value in half.items()})
    _, predicted_half = _accuracy(as_half, test_images, test_labels)
    float16 = bool((predicted_half == predicted).all())
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(half if float16 else net.state_dict(), path)
    return TrainedFeatures(path, hashlib.sha256(path.read_bytes()).hexdigest(), accuracy, float16)
