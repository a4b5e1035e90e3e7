"""The files a run writes besides its checkpoint: image grids, metrics and the loss plot."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from genmod.errors import GenmodError

if TYPE_CHECKING:
    from genmod.evaluation import NLLResult
    from genmod.metrics import EpochRecord

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
LOSS_PLOT = "loss_plot.png"
RECONSTRUCTIONS = "reconstructions.png"
EVAL = "eval.json"
SAMPLE_QUALITY = "sample_quality"
"""The key of ``eval.json`` under which FID, KID and the other sample metrics are kept."""
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
    # Imported here: torchvision's import takes a second (it loads torch._dynamo), which
    # commands that write no image (list, info, eval, runs) should not wait for.
    from torchvision.utils import save_image

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


def evaluation_report(
    result: NLLResult, model: str, epoch: int, run: str, split: str, seed: int
) -> dict[str, Any]:
    """The contents of ``eval.json``: the figures and what they were computed from. JSON has
    no NaN: a non-finite figure is null, and named, so no reader takes it for a number."""
    figures = result.to_dict()
    non_finite = [
        key for key, value in figures.items() if isinstance(value, float) and not math.isfinite(value)
    ]
    return {
        "model": model,
        "epoch": epoch,
        "run": run,
        "split": split,
        "seed": seed,
        **{key: None if key in non_finite else value for key, value in figures.items()},
        **({"non_finite": non_finite} if non_finite else {}),
    }


def evaluation_path(run: Path, report: dict[str, Any]) -> tuple[Path, str | None]:
    """``eval.json`` beside ``run``, unless it holds an evaluation of another quantity, k,
    image count or split: that one is kept, and this one goes beside it as
    ``eval-SPLIT-kK-N.json``; the second value then says so."""
    path = beside(run, EVAL)
    try:
        earlier = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        earlier = {}
    same = ("quantity", "k", "images", "split")
    if (
        not isinstance(earlier, dict)
        or "nll" not in earlier  # empty, or sample-quality figures only
        or all(earlier.get(f, "IS-NLL") == report[f] for f in same)
    ):
        return path, None
    k = f"-k{report['k']}" if report["k"] is not None else ""
    keyed = beside(run, f"eval-{report['split']}{k}-{report['images']}.json")
    return keyed, (
        f"{path} holds another evaluation (k={earlier.get('k')}, {earlier.get('images')} images, "
        f"{earlier.get('split')}), kept; this one goes to {keyed}"
    )


def write_evaluation(report: dict[str, Any], path: Path) -> None:
    """Write ``report``, keeping the sample-quality figures ``path`` holds; a failure says that
    the figures were not saved and how to save them."""
    earlier = _read_report(path)
    if SAMPLE_QUALITY in earlier and SAMPLE_QUALITY not in report:
        report = {**report, SAMPLE_QUALITY: earlier[SAMPLE_QUALITY]}
    try:
        path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    except OSError as exc:
        raise GenmodError(
            f"could not save {path} ({exc.strerror}): save the figures elsewhere with --output FILE"
        ) from None


def add_sample_quality(path: Path, figures: dict[str, Any]) -> None:
    """Add the figures of each metric (``{"fid": {...}}``) to the report at ``path`` under
    ``sample_quality``, beside its likelihood and the other metrics' figures."""
    report = _read_report(path)
    report[SAMPLE_QUALITY] = {**report.get(SAMPLE_QUALITY, {}), **figures}
    write_evaluation(report, path)


def _read_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


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
    """Train vs test bound per epoch, as in the seed notebook, named as the model names it;
    for a model without a bound, each of its named terms on the training set."""
    from matplotlib.figure import Figure  # a third of a second: only for the commands that plot

    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.subplots()
    quantity = history[-1].quantity
    if quantity is not None:
        for split in ("train", "test"):
            points = [
                (r.epoch, m.loss)
                for r in history
                if (m := getattr(r, split)) is not None and m.loss is not None
            ]
            axes.plot([e for e, _ in points], [v for _, v in points], marker="o", label=split)
        axes.set_ylabel(f"{quantity} (nats per image)")
        axes.set_title("Training and test loss")
    else:
        for term in history[-1].train.terms:
            values = [r.train.terms.get(term, math.nan) for r in history]
            axes.plot([r.epoch for r in history], values, marker="o", label=f"train {term}")
        axes.set_ylabel("per image")
        axes.set_title("Training losses")
    axes.set_xlabel("epoch")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
