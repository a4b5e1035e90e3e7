"""A training run from a validated config: set-up, the epoch loop, checkpoints and outputs.

:func:`train` is the whole story, top to bottom: pick the device, join the process group (and
leave it however the run ends), set the run up, fit it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path

import torch
from rich.console import Console
from torch.nn.parallel import DistributedDataParallel

from genmod import artifacts, distributed
from genmod.checkpoint import FILENAME as CHECKPOINT
from genmod.checkpoint import CheckpointState, load_checkpoint, save_checkpoint
from genmod.config import RunConfig
from genmod.config_loader import resolve_run_config
from genmod.data import Data, load_data
from genmod.errors import CheckpointError, ConfigError, GenmodError, PluginError
from genmod.kinds import BY_NAME
from genmod.loggers import LOGGERS
from genmod.metrics import EpochRecord, SplitMetrics, write_metrics
from genmod.probe import probe_model
from genmod.progress import RunReporter
from genmod.registry import Registry
from genmod.specs import ModelContext
from genmod.training import EpochPosition, evaluate, steps_in_epoch, train_epoch
from genmod.vae import VAE


class Interrupted(GenmodError):
    """The run was stopped by Ctrl-C or SIGTERM; its last checkpoint is intact."""

    exit_code = 130


def train(
    config: RunConfig,
    registry: Registry,
    *,
    out_dir: Path | None = None,
    resume: bool = False,
    force: bool = False,
    reporter: RunReporter | None = None,
) -> list[EpochRecord]:
    """Train ``config`` into ``out_dir`` (or continue the run there); returns every epoch's metrics."""
    topology = distributed.topology_from_env()
    device = select_device(config.train.device)
    if device.type == "cuda" and topology.distributed:
        device = torch.device("cuda", topology.local_rank)
    with distributed.process_group(topology, device):
        run = Run(
            config, registry, topology, device, out_dir, reporter or RunReporter(), resume=resume, force=force
        )
        return run.fit()


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
        raise ConfigError(
            f"cannot write to output folder {path} ({exc.strerror}): choose another --out"
        ) from None


def build_model(
    config: RunConfig, registry: Registry, data_shape: tuple[int, ...], probe: torch.Tensor | None = None
) -> VAE:
    """Build the configured model for images of ``data_shape``; check it on ``probe`` if given."""
    entry = registry.get("model", config.model.name)
    context = ModelContext(data_shape=tuple(data_shape), build_component=registry.build_component)
    model = entry.spec.build(config.model, context)
    base = BY_NAME["model"].base
    assert base is not None
    if not isinstance(model, base):
        raise PluginError(
            f"plugin '{entry.plugin.name}': model '{entry.name}' built a "
            f"{type(model).__name__}, not a genmod.{base.__name__}"
        )
    if probe is not None:
        origin = lambda part: registry.origin(part) or entry.plugin.name  # noqa: E731
        probe_model(model.to(probe.device), probe, entry.name, origin)
    return model


def make_adam(parameters: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with its fused kernel where the device has one: a single pass over all parameters
    per step, about 15% faster per epoch than the default on the reference model on CPU."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(parameters, lr=lr)


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"the checkpoint does not match this model or config ({reason[:150]})"
        ) from None


def load_trained(
    run_dir: Path, registry: Registry, device: torch.device
) -> tuple[RunConfig, VAE, CheckpointState]:
    """The config, the model with its last checkpoint's weights (in eval mode), and the checkpoint."""
    config = resolve_run_config(registry, run_dir=run_dir)
    state = load_checkpoint(run_dir / CHECKPOINT, config.model.name)
    model = build_model(config, registry, tuple(state["data_shape"]))
    load_weights(model, state["model"])
    return config, model.to(device).eval(), state


class _StopNow(BaseException):
    """A second Ctrl-C or SIGTERM: stop at once, without another checkpoint.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` in model
    code swallows it; private, so that genmod never uses ``KeyboardInterrupt`` as control flow.
    """


class _StopRequests:
    """The first Ctrl-C or SIGTERM asks the run to stop after the current step and checkpoint
    there; a second one stops at once (the last checkpoint stays)."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise _StopNow
        self.requested = True

    @contextmanager
    def installed(self) -> Iterator[None]:
        try:
            previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: leave signals alone
            yield
            return
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class Run:
    """One training run writing into ``out_dir`` (on rank 0 of a multi-process launch).

    ``train.batch_size`` is the global batch: with N processes each takes 1/N of it.
    """

    def __init__(
        self,
        config: RunConfig,
        registry: Registry,
        topology: distributed.Topology,
        device: torch.device,
        out_dir: Path | None,
        reporter: RunReporter,
        *,
        resume: bool = False,
        force: bool = False,
    ) -> None:
        self.config = config
        train = config.train
        self.topology = topology
        self.device = device
        self.reporter = reporter if topology.is_main else RunReporter(Console(quiet=True))
        torch.manual_seed(train.seed + topology.rank)
        self.generator = torch.Generator().manual_seed(train.seed)
        self.data: Data = load_data(registry.dataset(config.data.name), config.data, device)
        if train.batch_size > len(self.data.train):
            raise ConfigError(
                f"train.batch_size = {train.batch_size} is larger than the {len(self.data.train)} "
                "training images: lower it"
            )
        if train.batch_size < topology.world_size:
            raise ConfigError(
                f"train.batch_size = {train.batch_size} is the global batch and must be at least the "
                f"{topology.world_size} processes"
            )
        shape = tuple(self.data.train.shape[1:])
        self.model = build_model(config, registry, shape, probe=self.data.train[:2])
        self.trained: torch.nn.Module = (
            DistributedDataParallel(self.model, device_ids=[device] if device.type == "cuda" else None)
            if topology.distributed
            else self.model
        )
        self.optimizer = make_adam(self.model.parameters(), train.lr)
        self.scheduler = (
            torch.optim.lr_scheduler.StepLR(self.optimizer, train.lr_step_size, train.lr_gamma)
            if train.lr_step_size
            else None
        )
        self.history: list[EpochRecord] = []
        self.epoch = 0
        self.position: EpochPosition | None = None
        self.logger = LOGGERS[train.logger]() if train.logger != "none" else None
        self.resume = resume
        self.out_dir: Path = distributed.broadcast(out_dir or default_out_dir(config.model.name))
        if resume:
            self.restore(load_checkpoint(self.out_dir / CHECKPOINT, config.model.name))
        elif topology.is_main:
            prepare_out_dir(self.out_dir, force=force)

    # -- state -------------------------------------------------------------------------
    def state(self) -> CheckpointState:
        position = self.position
        return CheckpointState(
            model_name=self.config.model.name,
            config=self.config.to_dict(),
            epoch=self.epoch,
            position=None
            if position is None
            else {
                "order_state": position.order_state,
                "step": position.step,
                "totals": position.totals.cpu(),
            },
            data_shape=list(self.data.train.shape[1:]),
            model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict() if self.scheduler else None,
            rng={
                "torch": distributed.gather(torch.get_rng_state()),
                "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                "data": self.generator.get_state(),
            },
            history=[record.model_dump() for record in self.history],
        )

    def restore(self, state: CheckpointState) -> None:
        load_weights(self.model, state["model"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(
                f"the checkpoint's optimizer state does not match this config ({exc})"
            ) from None
        rng = state["rng"]
        if len(rng["torch"]) != self.topology.world_size:
            raise CheckpointError(
                f"this run was trained by {len(rng['torch'])} process(es): resume it with as many "
                f"(now {self.topology.world_size})"
            )
        torch.set_rng_state(rng["torch"][self.topology.rank])
        if rng["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.generator.set_state(rng["data"])
        self.history = [EpochRecord.model_validate(row) for row in state["history"]]
        self.epoch = int(state["epoch"])
        saved = state["position"]
        self.position = (
            None if saved is None else EpochPosition(saved["order_state"], saved["step"], saved["totals"])
        )

    def checkpoint(self) -> None:
        state = self.state()  # every rank takes part in gathering the RNG states
        if self.topology.is_main:
            save_checkpoint(self.out_dir / CHECKPOINT, state)

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

    def _where(self) -> str:
        world = self.topology.world_size
        backend = distributed.backend(self.device)
        return str(self.device) + (f", {world} processes ({backend})" if world > 1 else "")

    # -- the loop --------------------------------------------------------------------------
    def fit(self) -> list[EpochRecord]:
        """Train the remaining epochs; returns the per-epoch metrics."""
        train = self.config.train
        main = self.topology.is_main
        if main and not self.resume:
            artifacts.write_config(self.config.to_dict(), self.out_dir / artifacts.CONFIG)
            if 0 in train.sample_epochs:
                self.save_samples()
        if main and self.logger is not None:
            self.logger.open(self.out_dir)
        parameters = sum(p.numel() for p in self.model.parameters())
        self.reporter.start(
            self.config.model.name, self.out_dir, self._where(), parameters, self.epoch + 1, self.resume
        )
        stops = _StopRequests()
        # Under torchrun every process gets the signal at its own moment, so ranks could stop
        # at different steps: there the default handlers end the run, which resumes from its
        # last completed epoch.
        guard = stops.installed() if not self.topology.distributed else nullcontext()
        try:
            with guard:
                while self.epoch < train.epochs and not stops.requested:
                    self._epoch(stops)
                if stops.requested and self.position is not None:
                    self.checkpoint()  # stopped mid-epoch: save exactly where
        except _StopNow:
            raise Interrupted(
                f"stopped at once; the checkpoint of epoch {self.epoch} is kept. "
                f"Continue with: genmod run --resume {self.out_dir}"
                if self.epoch
                else "stopped at once, before the first checkpoint; nothing to resume"
            ) from None
        finally:
            self.reporter.stop()
            if self.logger is not None:
                self.logger.close()
        if stops.requested and self.epoch < train.epochs:
            done = (
                f"epoch {self.epoch + 1}, step {self.position.step}"
                if self.position
                else f"epoch {self.epoch}"
            )
            raise Interrupted(
                f"interrupted; training up to {done} is saved. Continue with: genmod run --resume {self.out_dir}"
            )
        if main:
            self.save_final_outputs()
            self.reporter.summary(self.history, self.out_dir)
        return self.history

    def _epoch(self, stops: _StopRequests) -> None:
        """Train one epoch (or up to a requested stop), then evaluate, record and checkpoint."""
        train = self.config.train
        epoch = self.epoch + 1
        steps = steps_in_epoch(len(self.data.train), train.batch_size)
        self.reporter.epoch_started(epoch, train.epochs, steps)
        started = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        self.position = train_epoch(
            self.trained,
            self.optimizer,
            self.data.train,
            train.batch_size,
            self.generator,
            epoch,
            self.position,
            on_progress=self.reporter.step,
            binarize=self.data.dynamic_binarization,
            should_stop=lambda: stops.requested,
            shard=(self.topology.rank, self.topology.world_size),
        )
        if self.position.step < steps:
            return  # stopped mid-epoch: fit checkpoints this position
        rank, world = self.topology.rank, self.topology.world_size
        fit = SplitMetrics.from_totals(distributed.all_reduce_sum(self.position.totals))
        test_totals = evaluate(self.model, self.data.test.tensor_split(world)[rank], train.eval_batch_size)
        test = SplitMetrics.from_totals(distributed.all_reduce_sum(test_totals))
        if self.scheduler is not None:
            self.scheduler.step()
        self.epoch, self.position = epoch, None
        record = EpochRecord(epoch=epoch, train=fit, test=test, lr=lr, seconds=time.perf_counter() - started)
        self.history.append(record)
        if self.topology.is_main and (epoch in train.sample_epochs or epoch == train.epochs):
            self.save_samples()
        self.checkpoint()
        if self.topology.is_main:
            write_metrics(self.history, self.out_dir / artifacts.METRICS)
            if self.logger is not None:
                self.logger.log(record)
        self.reporter.epoch_done(record, train.epochs)
