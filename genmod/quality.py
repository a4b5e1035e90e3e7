"""Sample quality of a model: draw samples, compute features, hand both sets to evaluators.

Every figure is reported with how it was computed (:attr:`SampleQuality.how`): the feature
network, the number of samples, the reference images and the evaluator's own settings, so an
FID over genmod's MNIST features is never read as an Inception FID. The reference images'
features are cached under the features folder, keyed by the network and a digest of the
images themselves, so a second evaluation against the same split does not recompute them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from genmod.data import as_float
from genmod.errors import GenmodError
from genmod.features import Loaded, features_dir, network_for
from genmod.model import GenerativeModel
from genmod.precision import autocast, precision_name

if TYPE_CHECKING:
    from genmod.config import ComponentRef
    from genmod.plugins import Registry

FEATURE_BATCH = 500


@dataclass(frozen=True)
class SampleQuality:
    """One evaluator's figures and what they were computed from."""

    metric: str
    figures: dict[str, float]
    features: str
    """The feature network, by its name in :data:`genmod.features.NETWORKS`."""
    samples: int
    reference: str
    """The real images compared with, e.g. ``test split of mnist (10000 images)``."""
    settings: str
    seconds: float
    precision: str = "fp32"
    """The layers' arithmetic the samples were drawn in (:func:`genmod.precision.precision_name`)."""
    sampling: dict[str, Any] = field(default_factory=dict)
    """The model's sampling options the samples were drawn with (``{"temperature": 0.7}``)."""
    report: Path | None = field(default=None, compare=False)
    """Where :func:`genmod.sample_quality` added the figures (not part of them)."""

    @property
    def how(self) -> str:
        extra = f", {self.settings}" if self.settings else ""
        options = ", ".join(f"{key}={value}" for key, value in self.sampling.items())
        drawn = f"{self.samples} samples drawn in {self.precision}" + (f" with {options}" if options else "")
        return f"{self.features} features, {drawn} vs the {self.reference}{extra}"

    def to_dict(self) -> dict[str, object]:
        figures = {**asdict(self), "how": self.how}
        del figures["report"]
        return figures


def features_of(network: nn.Module, images: Tensor) -> Tensor:
    """``network``'s features of ``images`` (any dtype genmod stores images in), in float64."""
    device = next(network.parameters()).device
    with torch.no_grad():
        parts = [
            network(as_float(batch.to(device)).clamp(0, 1)).double().cpu()
            for batch in images.split(FEATURE_BATCH)
        ]
    return torch.cat(parts)


def reference_features(features: Loaded, images: Tensor, name: str) -> Tensor:
    """Features of the real ``images``, read from the cache when they were computed before."""
    digest = hashlib.sha256(images.cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
    path = features_dir() / "reference" / f"{name}-{features.name}-{features.sha256[:8]}-{digest}.pt"
    if path.is_file():
        try:
            cached = torch.load(path, weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged cache file is recomputed, whatever the damage
            cached = None
        if isinstance(cached, Tensor) and cached.shape[0] == len(images):
            return cached
    computed = features_of(features.network, images)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(computed, partial)
    partial.replace(path)  # never a half-written cache file
    return computed


def generated_features(
    model: GenerativeModel,
    network: nn.Module,
    n: int,
    batch: int,
    on_progress: Callable[[int], None],
    dtype: torch.dtype | None = None,
    options: Mapping[str, Any] | None = None,
) -> Tensor:
    """Features of ``n`` samples of ``model``, drawn ``batch`` at a time with layers in ``dtype``
    and the model's sampling ``options``."""
    device = next(model.parameters()).device
    parts, done = [], 0
    while done < n:
        size = min(batch, n - done)
        with autocast(dtype, device):
            drawn = model.sample(size, **(options or {}))
        diverged = (
            int((~torch.isfinite(drawn.flatten(1))).any(dim=1).sum()) if drawn.is_floating_point() else 0
        )
        if diverged:
            # Features of NaN images are NaN, and every statistic after them (FID's matrix
            # square root stops in a traceback): say what happened instead.
            raise GenmodError(
                f"{diverged} of {size} samples had pixels that are not finite (NaN or inf): the model's "
                "sampling diverged; sample-quality metrics need finite images (a sampling "
                "--option may keep them finite, e.g. a flow's temperature: genmod info MODEL)"
            )
        parts.append(features_of(network, drawn))
        done += size
        on_progress(done)
    return torch.cat(parts)


class SampleMetrics:
    """The evaluators, the feature network and the reference images' features, made once:
    what ``genmod eval --metric`` computes with, and ``train.sample_metrics`` after each epoch."""

    def __init__(
        self,
        registry: Registry,
        metrics: Sequence[ComponentRef],
        reference: Tensor,
        reference_name: str,
        dataset: str,
        features: str = "auto",
        features_weights: Path | None = None,
        device: torch.device | None = None,
        batch: int = 1000,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.evaluators = {ref.name: registry.build_evaluator(ref) for ref in metrics}
        self.features = network_for(dataset, tuple(reference.shape[1:]), features).load(features_weights)
        self.features.network.to(device or torch.device("cpu"))
        self.reference = f"{reference_name} ({len(reference)} images)"
        self.real = reference_features(self.features, reference, reference_name.replace(" ", "-"))
        self.batch = batch
        # Samples are drawn in float32 unless asked otherwise: training's figures after each
        # epoch (which pick a GAN's best epoch) and ``genmod eval``'s then agree.
        self.dtype = dtype

    @property
    def figure_names(self) -> list[str]:
        """The names of every evaluator's figures, in order."""
        return [name for evaluator in self.evaluators.values() for name in evaluator.figures]

    def evaluate(
        self,
        model: GenerativeModel,
        samples: int,
        on_progress: Callable[[int], None] = lambda done: None,
        options: Mapping[str, Any] | None = None,
    ) -> list[SampleQuality]:
        """Each evaluator's figures for ``samples`` of ``model`` (drawn with torch's random state
        and the model's sampling ``options``)."""
        start = time.perf_counter()
        generated = generated_features(
            model, self.features.network, samples, self.batch, on_progress, self.dtype, options
        )
        drawn = time.perf_counter() - start
        results = []
        for name, evaluator in self.evaluators.items():
            started = time.perf_counter()
            figures = evaluator.compute(generated, self.real)
            results.append(
                SampleQuality(
                    metric=name,
                    figures=figures,
                    features=self.features.name,
                    samples=samples,
                    reference=self.reference,
                    settings=evaluator.describe(),
                    seconds=drawn + time.perf_counter() - started,
                    precision=precision_name(self.dtype),
                    sampling=dict(options or {}),
                )
            )
        return results

    def figures(self, model: GenerativeModel, samples: int, seed: int) -> dict[str, float]:
        """All figures for ``samples`` samples drawn with ``seed``; the caller's random state is
        left as it was, so that a resumed training is bit-exact."""
        device = next(model.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            results = self.evaluate(model, samples)
        return {name: value for result in results for name, value in result.figures.items()}
