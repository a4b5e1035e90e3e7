"""The files a run writes besides its checkpoint: image grids, metrics and the loss plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from matplotlib.figure import Figure
from torchvision.utils import save_image

if TYPE_CHECKING:
    from genmod.metrics import EpochRecord

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
LOSS_PLOT = "loss_plot.png"
RECONSTRUCTIONS = "reconstructions.png"
EVAL = "eval.json"
CHANGES = "changes.log"
"""What a resume changed in the config, one line each time."""
WRITTEN = (
    CONFIG, METRICS, LOSS_PLOT, RECONSTRUCTIONS, CHANGES, "eval*.json", "samples_epoch_*.png",
    "checkpoint.pt", "best.pt", "trackers.json", "machine.json", "*.safetensors", "model.*.json",
    "samples.png", "reconstruct.png", "manifold.png", "tensorboard", "wandb",
)  # fmt: skip
"""What genmod writes into a run folder (file names and patterns): ``--force`` removes all of
it, so that nothing of an earlier run is taken for the new one's."""


def beside(run: Path, name: str) -> Path:
    """Where a command writes ``name`` for ``run``: inside a run folder, or next to an exported
    weights file (``model.safetensors`` -> ``model.eval.json``)."""
    return run / name if run.is_dir() else run.with_name(f"{run.stem}.{name}")


def samples_name(epoch: int) -> str:
    return f"samples_epoch_{epoch:03d}.png"


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    save_image(images.detach().float().cpu().clamp(0, 1), path, nrow=nrow, padding=2)


def save_reconstructions(originals: torch.Tensor, reconstructions: torch.Tensor, path: Path) -> None:
    """Originals in odd rows, their reconstructions in the row below."""
    n = len(originals)
    rows = [t for i in range(0, n, 8) for t in (originals[i : i + 8], reconstructions[i : i + 8])]
    save_grid(torch.cat(rows), path)


def read_eval(run_dir: Path) -> dict[str, Any]:
    """``genmod eval``'s report of a run folder, or {} if it was not evaluated."""
    path = run_dir / EVAL
    return json.loads(path.read_text()) if path.is_file() else {}


def write_config(config: dict[str, Any], path: Path) -> None:
    path.write_text(yaml.safe_dump(config, sort_keys=False))


class _NoAliases(yaml.SafeLoader):
    """YAML's safe loader, refusing aliases: genmod's configs never need them, and a few lines
    of nested aliases expand to billions of values when the config is copied or written out."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not read in genmod configs: write the values out",
                event.start_mark,
            )  # fmt: skip
        return super().compose_node(parent, index)


def load_yaml(text: str) -> Any:
    """Parse a config's YAML: plain values only (no tags, no aliases)."""
    return yaml.load(text, Loader=_NoAliases)  # noqa: S506 - a SafeLoader subclass


def read_config(path: Path) -> dict[str, Any]:
    """A run folder's ``config.yaml``; ``ValueError`` when it is not a mapping of sections."""
    config = load_yaml(path.read_text())
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a mapping of sections (model, data, train)")
    return config


def plot_losses(history: Sequence[EpochRecord], path: Path) -> None:
    """Train vs test negative ELBO per epoch, as in the seed notebook."""
    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.subplots()
    epochs = [record.epoch for record in history]
    axes.plot(epochs, [record.train.loss for record in history], marker="o", label="train")
    axes.plot(epochs, [record.test.loss for record in history], marker="o", label="test")
    axes.set_xlabel("epoch")
    axes.set_ylabel("negative ELBO (nats per image)")
    axes.set_title("Training and test loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
