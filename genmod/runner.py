"""A training run from a validated config: set-up, the epoch loop, checkpoints and outputs."""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import torch

from genmod import artifacts
from genmod.checkpoint import FILENAME as CHECKPOINT, load_checkpoint, save_checkpoint
from genmod.config import RunConfig
from genmod.config_loader import resolve_run_config
from genmod.data import Data, load_data
from genmod.errors import CheckpointError, ConfigError, GenmodError, PluginError
from genmod.probe import probe_model
from genmod.progress import RunReporter
from genmod.registry import Registry
from genmod.specs import BuildContext
from genmod.training import evaluate, train_epoch
from genmod.vae import VAE


class Interrupted(GenmodError):
    """The run was stopped by Ctrl-C or SIGTERM; its last checkpoint is intact."""

    exit_code = 130


def select_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}': use auto, cpu, cuda, cuda:N or mps") from None
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available()
        and (device.index is None or device.index < torch.cuda.device_count()),
        "mps": torch.backends.mps.is_available(),
    }.get(device.type, False)
    if not available:
        raise ConfigError(f"device '{name}' is not available on this machine: use --device cpu or auto")
    return device


def default_out_dir(model: str, root: Path = Path("runs")) -> Path:
    return root / f"{model}-{datetime.now():%Y%m%d-%H%M%S}"


def prepare_out_dir(path: Path, *, force: bool) -> None:
    """Create the output folder; refuse one that already holds files unless ``force``."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output path {path} is a file: choose another --out")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise ConfigError(
            f"output folder {path} is not empty: choose another --out, pass --force to "
            f"overwrite it, or --resume {path} to continue that run"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to output folder {path} ({exc.strerror}): choose another --out") from None


def build_model(
    config: RunConfig, registry: Registry, data_shape: tuple[int, ...], probe: torch.Tensor | None = None
) -> VAE:
    """Build the configured model for images of ``data_shape``; check it on ``probe`` if given."""
    entry = registry.get("model", config.model.name)
    model = entry.spec.build(config.model, BuildContext(tuple(data_shape), registry))
    if not isinstance(model, VAE):
        raise PluginError(
            f"plugin '{entry.plugin.name}' ({entry.plugin.distribution}): model '{entry.name}' built a "
            f"{type(model).__name__}, not a genmod.VAE"
        )
    if probe is not None:
        probe_model(model.to(probe.device), probe, entry.name)
    return model


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"the checkpoint does not match this model or config ({reason[:150]})") from None


def load_trained(run_dir: Path, registry: Registry, device: torch.device) -> tuple[RunConfig, VAE, dict[str, Any]]:
    """The config, the model with its last checkpoint's weights (in eval mode), and the checkpoint."""
    config = resolve_run_config(registry, run_dir=run_dir)
    state = load_checkpoint(run_dir / CHECKPOINT, config.model.name)
    model = build_model(config, registry, tuple(state["data_shape"]))
    load_weights(model, state["model"])
    return config, model.to(device).eval(), state


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so a killed job also stops between checkpoints cleanly."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Run:
    """One training run writing into ``out_dir``."""

    def __init__(self, config: RunConfig, registry: Registry, out_dir: Path, reporter: RunReporter) -> None:
        self.config = config
        self.out_dir = out_dir
        self.reporter = reporter
        train = config.train
        self.device = select_device(train.device)
        torch.manual_seed(train.seed)
        self.generator = torch.Generator().manual_seed(train.seed)
        self.data: Data = load_data(registry.dataset(config.data.name), config.data, self.device)
        if train.batch_size > len(self.data.train):
            raise ConfigError(
                f"train.batch_size = {train.batch_size} is larger than the {len(self.data.train)} "
                "training images: lower it"
            )
        self.model = build_model(config, registry, tuple(self.data.train.shape[1:]), probe=self.data.train[:2])
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=train.lr)
        self.scheduler = (
            torch.optim.lr_scheduler.StepLR(self.optimizer, train.lr_step_size, train.lr_gamma)
            if train.lr_step_size
            else None
        )
        self.history: list[dict[str, Any]] = []
        self.epoch = 0

    # -- state -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model_name": self.config.model.name,
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "data_shape": list(self.data.train.shape[1:]),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "data": self.generator.get_state(),
            },
            "history": self.history,
        }

    def restore(self, state: dict[str, Any]) -> None:
        load_weights(self.model, state["model"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"the checkpoint's optimizer state does not match this config ({exc})") from None
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.generator.set_state(state["rng"]["data"])
        self.history = list(state["history"])
        self.epoch = int(state["epoch"])

    # -- outputs -------------------------------------------------------------------------
    @torch.inference_mode()
    def save_samples(self) -> None:
        """A grid from the same prior draws every time, without touching the training RNG."""
        self.model.eval()
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.config.train.seed)
            images = self.model.sample(self.config.train.samples)
        artifacts.save_grid(images, self.out_dir / artifacts.samples_name(self.epoch))

    @torch.inference_mode()
    def save_final_outputs(self) -> None:
        self.model.eval()
        originals = self.data.test[:32]
        artifacts.save_reconstructions(
            originals, self.model.reconstruct(originals), self.out_dir / artifacts.RECONSTRUCTIONS
        )
        artifacts.plot_losses(self.history, self.out_dir / artifacts.LOSS_PLOT)

    # -- the loop --------------------------------------------------------------------------
    def fit(self, *, resume: bool = False) -> list[dict[str, Any]]:
        train = self.config.train
        if resume:
            self.restore(load_checkpoint(self.out_dir / CHECKPOINT, self.config.model.name))
        else:
            artifacts.write_config(self.config.to_dict(), self.out_dir / artifacts.CONFIG)
            if 0 in train.sample_epochs:
                self.save_samples()
        parameters = sum(p.numel() for p in self.model.parameters())
        self.reporter.start(self.config.model.name, self.out_dir, str(self.device), parameters, self.epoch + 1)
        steps = -(-len(self.data.train) // train.batch_size)
        try:
            with _sigterm_as_interrupt():
                while self.epoch < train.epochs:
                    self._epoch(steps)
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted during epoch {self.epoch + 1}; epochs 1-{self.epoch} are saved. "
                f"Continue with: genmod run --resume {self.out_dir}"
                if self.epoch
                else "interrupted before the first epoch finished; nothing to resume"
            ) from None
        finally:
            self.reporter.stop()
        self.save_final_outputs()
        self.reporter.summary(self.history, self.out_dir)
        return self.history

    def _epoch(self, steps: int) -> None:
        train = self.config.train
        epoch = self.epoch + 1
        self.reporter.epoch_started(epoch, train.epochs, steps)
        started = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        fit = train_epoch(
            self.model, self.optimizer, self.data.train, train.batch_size, self.generator, epoch,
            on_progress=self.reporter.step, binarize=self.data.dynamic_binarization,
        )
        test = evaluate(self.model, self.data.test, train.eval_batch_size)
        if self.scheduler is not None:
            self.scheduler.step()
        self.epoch = epoch
        self.history.append(
            {
                "epoch": epoch,
                "train_loss": fit.loss,
                "train_reconstruction": fit.reconstruction,
                "train_kl": fit.kl,
                "test_loss": test.loss,
                "test_reconstruction": test.reconstruction,
                "test_kl": test.kl,
                "lr": lr,
                "seconds": time.perf_counter() - started,
            }
        )
        if epoch in train.sample_epochs or epoch == train.epochs:
            self.save_samples()
        save_checkpoint(self.out_dir / CHECKPOINT, self.state())
        artifacts.write_metrics(self.history, self.out_dir / artifacts.METRICS)
        self.reporter.epoch_done(self.history[-1], train.epochs)
