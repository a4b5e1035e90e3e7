"""Feature networks for sample-quality metrics: what FID, KID and precision/recall compare.

A metric such as FID is only defined together with the network whose features it compares,
so every figure genmod reports names the network. The table :data:`NETWORKS` holds them:

- ``mnist`` and ``fashion-mnist``: small classifiers genmod trains (``genmod features train``)
  and ships, the defaults for 1x28x28 images. Inception features are a poor fit for such
  images and are not available offline.
- ``inception-v3``: the standard FID network (the TensorFlow 2015-12-05 Inception as
  torch-fidelity ports it), for RGB images. Its weights are never downloaded: genmod reads
  them from its cache folder or a given path and checks their checksum first.

Weights are read with ``torch.load(weights_only=True)``: a weights file runs no code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torch
from platformdirs import user_cache_dir
from torch import Tensor, nn

from genmod.errors import ConfigError

FEATURES_ENV = "GENMOD_FEATURES_DIR"
"""Folder genmod reads downloaded feature-network weights from (default: its cache folder)."""


class DigitFeatures(nn.Module):
    """A small CNN classifier of 1x28x28 images; its features are the activations before the
    class logits. Two 3x3 convolutions with pooling, then one dense layer."""

    def __init__(self, num_features: int = 32, classes: int = 10) -> None:
        super().__init__()
        # Few features: the finite-sample bias of FID grows with their number and spread.
        self.num_features = num_features
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, self.num_features), nn.ReLU(),
        )  # fmt: skip
        self.classify = nn.Sequential(nn.Dropout(0.5), nn.Linear(self.num_features, classes))

    def forward(self, x: Tensor) -> Tensor:
        """Features of images with values in [0, 1], shape ``(batch, num_features)``."""
        features: Tensor = self.body(x)
        return features

    def logits(self, x: Tensor) -> Tensor:
        logits: Tensor = self.classify(self.body(x))
        return logits


class InceptionFeatures(nn.Module):
    """Inception-v3's 2048 pool features of images in [0, 1] (grey ones repeated to RGB),
    resized to 299x299 inside the network as the TensorFlow original did."""

    num_features = 2048

    def __init__(self, weights: Path) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.net = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights)
        )

    def forward(self, x: Tensor) -> Tensor:
        rgb = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        features: tuple[Tensor] = self.net((rgb * 255).round().clamp(0, 255).to(torch.uint8))
        return features[0]


@dataclass(frozen=True)
class Loaded:
    """A feature network ready to use, with the digest of the weights it was built from (which
    the cached features of reference images are keyed by: ``--features-weights`` may differ)."""

    name: str
    network: nn.Module
    sha256: str


@dataclass(frozen=True, kw_only=True)
class FeatureNetwork:
    """A row of :data:`NETWORKS`: how to build the network from its weights file."""

    name: str
    description: str
    build: Callable[[Path], nn.Module]
    file: str
    """The weights' file name, in genmod's package (``shipped``) or the features folder."""
    sha256: str
    """The weights' SHA-256, or its first characters (torch.hub's convention)."""
    shipped: bool = False
    shape: tuple[int, ...] | None = None
    """The image shape it takes; ``None``: any size, 1 or 3 channels."""

    def weights(self, path: Path | None = None) -> Path:
        """The weights file: ``path``, the shipped one, or the one in the features folder."""
        if path is not None:
            return path
        if self.shipped:
            return Path(str(files("genmod") / "feature_weights" / self.file))
        return features_dir() / self.file

    def load(self, path: Path | None = None) -> Loaded:
        """The network in eval mode, its weights checked against :attr:`sha256` first."""
        weights = self.weights(path)
        if not weights.is_file():
            raise ConfigError(
                f"the {self.name} feature network's weights are not at {weights}: put the file "
                f"{self.file} (sha256 {self.sha256}...) there, or set ${FEATURES_ENV}; "
                "genmod downloads nothing"
            )
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        if not digest.startswith(self.sha256):
            raise ConfigError(
                f"{weights} is not the {self.name} feature network: its sha256 is {digest[:16]}..., "
                f"expected {self.sha256}...; replace it with the right file"
            )
        return Loaded(self.name, self.build(weights).eval().requires_grad_(False), digest)


def features_dir() -> Path:
    import os

    return Path(os.environ.get(FEATURES_ENV) or Path(user_cache_dir("genmod")) / "features")


def _digits(weights: Path) -> nn.Module:
    net = DigitFeatures()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict({name: value.float() for name, value in state.items()})
    return net


def _classifier(dataset: str, label: str, sha256: str) -> FeatureNetwork:
    """The row of a classifier genmod trains (``genmod features train DATASET``) and ships."""
    return FeatureNetwork(
        name=dataset,
        description=f"genmod's {label} classifier (32 features; genmod features train {dataset})",
        build=_digits,
        file=f"{dataset}.pt",
        sha256=sha256,
        shipped=True,
        shape=(1, 28, 28),
    )


NETWORKS: dict[str, FeatureNetwork] = {
    network.name: network
    for network in (
        _classifier("mnist", "MNIST", "1032adeaf01e3d9d593158cfd3d85b87c58fcbda54d839a721e9cf5efca1181d"),
        _classifier(
            "fashion-mnist",
            "Fashion-MNIST",
            "d9b697b993ec97e1ceb07891bf2569efe5df69d35102735ee062fad442557183",
        ),
        FeatureNetwork(
            name="inception-v3",
            description="Inception-v3 pool features (2048), the standard FID network (torch-fidelity's port)",
            build=InceptionFeatures,
            file="pt_inception-2015-12-05-6726825d.pth",
            sha256="6726825d",
        ),
    )
}
"""Every feature network, by the name reports give it."""


def network_for(dataset: str, shape: tuple[int, ...], name: str = "auto") -> FeatureNetwork:
    """The network named ``name``; for ``auto``, the dataset's own classifier where genmod
    ships one, else the MNIST one for 1x28x28 images, else Inception."""
    if name == "auto":
        if dataset in NETWORKS and NETWORKS[dataset].shipped:
            name = dataset
        else:
            name = "mnist" if shape == (1, 28, 28) else "inception-v3"
    try:
        network = NETWORKS[name]
    except KeyError:
        raise ConfigError(f"unknown feature network '{name}': use auto, {', '.join(NETWORKS)}") from None
    if network.shape is not None and tuple(shape) != network.shape:
        raise ConfigError(
            f"the {name} feature network takes {'x'.join(map(str, network.shape))} images, not "
            f"{'x'.join(map(str, shape))}: choose another with --features"
        )
    return network
