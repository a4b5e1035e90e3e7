"""A trained run opened for use (:func:`open_run`): its model, config and data, and the image
files ``genmod sample``, ``reconstruct`` and ``manifold`` write from it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from genmod import artifacts
from genmod.config import MAX_GRID
from genmod.errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    from genmod.config import RunConfig
    from genmod.data import Data
    from genmod.model import GenerativeModel
    from genmod.plugins import Registry


@dataclass(frozen=True)
class TrainedRun:
    """A run folder, shipped model or exported weights file, opened with its trained model."""

    path: Path
    """The run folder or weights file it was opened from; the commands' files go beside it."""
    config: RunConfig
    model: GenerativeModel
    """The trained model, in eval mode, on the device it was opened for."""
    epoch: int
    """The epoch whose weights :attr:`model` holds."""
    run_id: str
    """The id of the run that trained the weights (kept by exports and copies)."""
    registry: Registry
    """The plugins it was opened with: its model's, its dataset's, the evaluators."""

    @property
    def name(self) -> str:
        """The registered model's name."""
        return self.config.model.name

    def data(self, root: str | Path | None = None, device: torch.device | None = None) -> Data:
        """The run's dataset (its config's ``data`` section, read from ``root`` if given), on
        ``device`` (default: the model's)."""
        from genmod.data import load_data

        data_config = self.config.data.model_copy(update={"root": Path(root)} if root else {})
        where = device if device is not None else next(self.model.parameters()).device
        return load_data(self.registry.dataset(data_config.name), data_config, where)

    def sample(self, n: int, *, seed: int = 0, options: Mapping[str, Any] | None = None) -> torch.Tensor:
        """``n`` images drawn from the model, with its sampling ``options`` (validated by its
        ``sample_options`` class: ``{"sampler": "ddim", "steps": 50}``) from ``seed``."""
        if not 1 <= n <= MAX_GRID:
            raise ConfigError(f"{n} samples are out of range: draw 1 to {MAX_GRID} at once")
        chosen = self.sampling_options(options or {})
        torch.manual_seed(seed)
        with torch.inference_mode():
            return self.model.sample(n, **chosen)

    def sampling_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` (``{"steps": "50"}``) as the keyword arguments of the model's ``sample``,
        validated by its ``sample_options`` class; a one-line error names a wrong one."""
        from pydantic import ValidationError

        if not given:
            return {}
        options = self.model.sample_options
        if options is None:
            raise ConfigError(f"model '{self.name}' takes no sampling options: leave out the options")
        try:
            valid = options.model_validate(dict(given))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            fields = ", ".join(options.model_fields)
            raise ConfigError(
                f"sampling option {where}: {error['msg']} (model '{self.name}' takes {fields})"
            ) from None
        dumped: dict[str, Any] = valid.model_dump(exclude_unset=True)
        return dumped

    def write_samples(
        self,
        n: int = 64,
        path: str | Path | None = None,
        *,
        seed: int = 0,
        options: Mapping[str, Any] | None = None,
    ) -> Path:
        """:meth:`sample` as a square grid PNG (default ``samples.png`` beside the run)."""
        images = self.sample(n, seed=seed, options=options)
        out = Path(path) if path is not None else artifacts.beside(self.path, "samples.png")
        artifacts.save_grid(images, out, nrow=math.ceil(math.sqrt(n)))
        return out

    def reconstruct(
        self, n: int = 32, *, root: str | Path | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` test images and the model's reconstructions of them."""
        from genmod.data import as_float

        self._needs("reconstruct")
        originals = as_float(self.data(root).test[:n])
        with torch.inference_mode():
            return originals, self.model.reconstruct(originals)

    def write_reconstructions(
        self, n: int = 32, path: str | Path | None = None, *, root: str | Path | None = None
    ) -> tuple[Path, int]:
        """:meth:`reconstruct` as a PNG, test images in odd rows and their reconstructions
        below (default ``reconstruct.png`` beside the run); returns it and the image count."""
        originals, reconstructions = self.reconstruct(n, root=root)
        out = Path(path) if path is not None else artifacts.beside(self.path, "reconstruct.png")
        artifacts.save_reconstructions(originals, reconstructions, out)
        return out, len(originals)

    def manifold(self, size: int = 20) -> torch.Tensor:
        """``size`` x ``size`` images decoded over the model's 2-D latent space: a model
        family's own method (``manifold``), refused in one line where there is none."""
        draw = getattr(self.model, "manifold", None)
        if not callable(draw):
            raise ConfigError(
                f"model '{self.name}' ({type(self.model).__name__}) has no 2-D latent space to draw a manifold of"
            )
        try:
            with torch.inference_mode():
                images: torch.Tensor = draw(size)
        except ValueError as exc:
            raise ConfigError(f"model '{self.name}' has no 2-D latent space: {exc}") from None
        return images

    def write_manifold(self, size: int = 20, path: str | Path | None = None) -> Path:
        """:meth:`manifold` as a PNG grid (default ``manifold.png`` beside the run)."""
        images = self.manifold(size)
        out = Path(path) if path is not None else artifacts.beside(self.path, "manifold.png")
        artifacts.save_grid(images, out, nrow=size)
        return out

    def _needs(self, method: str) -> None:
        if not self.model.can(method):
            raise ConfigError(
                f"model '{self.name}' ({type(self.model).__name__}) does not implement {method}(), "
                f"which this needs"
            )


def open_run(
    run: str | Path,
    checkpoint: str | None = None,
    *,
    device: str = "cpu",
    plugins: Sequence[str | Path] = (),
    trust_plugins: bool = False,
) -> TrainedRun:
    """A run folder, shipped ``pretrained/NAME`` or exported weights file with its trained
    model. ``checkpoint`` is ``"best"``, ``"last"`` or ``None`` (the best where the run kept
    one). The run's remembered plugin files are imported only if this user trained with them
    here and they are unchanged, or with ``trust_plugins=True`` (see :mod:`genmod.trust`)."""
    from genmod.api import registry
    from genmod.checkpoint import EXPORTED_SUFFIX
    from genmod.runner import load_trained, select_device

    run_dir = Path(run)
    found = registry(plugins, run=run_dir, trust_plugins=trust_plugins)
    try:
        config, model, epoch, run_id = load_trained(run_dir, found, select_device(device), checkpoint)
    except UnknownNameError as exc:
        if run_dir.suffix != EXPORTED_SUFFIX:
            raise
        from genmod.checkpoint import exported_requirements

        needs = ", ".join(f"{name} {version}" for name, version in exported_requirements(run_dir).items())
        hint = (
            f"it was exported with the plugin {needs}: pip install it" if needs else "pass its --plugin FILE"
        )
        raise UnknownNameError(f"{exc}; {hint}") from None
    return TrainedRun(run_dir, config, model, epoch, run_id, found)
