"""A training run from a validated config: set-up, the epoch loop, checkpoints and outputs.

:func:`train` is the whole story, top to bottom: pick the device, join the process group (and
leave it however the run ends), set the run up, fit it.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch.nn.parallel import DistributedDataParallel

from genmod import artifacts, distributed, lock, machine
from genmod.callbacks import Callback, WeightAveraging
from genmod.checkpoint import (
    BEST,
    EXPORTED_SUFFIX,
    Best,
    CheckpointState,
    load_checkpoint,
    load_weights_file,
    read_exported,
    save_best,
    save_checkpoint,
)
from genmod.checkpoint import FILENAME as CHECKPOINT
from genmod.config import RunConfig, TrainConfig
from genmod.config_loader import resolve_run_config, validate_run_config
from genmod.data import Data, as_float, binarize_once, load_data
from genmod.errors import CheckpointError, ConfigError, GenmodError, PluginError, one_line
from genmod.loggers import Trackers
from genmod.metrics import EpochRecord, SplitMetrics, write_metrics
from genmod.model import GenerativeModel
from genmod.openmp import ThreadShare
from genmod.optim import Schedule, optimizer_factory
from genmod.plugins import Registry, check_build_signature
from genmod.precision import (
    COMPILE_MIN_STEPS,
    LAYOUTS,
    autocast_dtype,
    compile_module,
    compile_wanted,
    grad_scaler,
    memory_format,
    precision_name,
)
from genmod.probe import probe_model
from genmod.progress import RunReporter
from genmod.quality import SampleMetrics
from genmod.specs import ModelContext
from genmod.training import EpochPosition, UpdateRules, evaluate, steps_in_epoch, train_epoch


class Interrupted(GenmodError):
    """The run was stopped by Ctrl-C or SIGTERM; its last checkpoint is intact. Not an error:
    its message says what was kept and, on a line of its own, the command that continues."""

    exit_code = 130


def train(
    config: RunConfig | Callable[[], RunConfig],
    registry: Registry,
    *,
    out_dir: Path | None = None,
    resume: bool = False,
    force: bool = False,
    reporter: RunReporter | None = None,
) -> Run:
    """Train ``config`` into ``out_dir`` (or continue the run there); returns the finished run.

    ``config`` may be a function that reads it, such as a resumed run's saved config: in a
    multi-process launch only rank 0 calls it and hands the config to the others, so machines
    other than rank 0's need no copy of the run folder.
    """
    topology = distributed.topology_from_env()
    with distributed.process_group(topology):
        if callable(config):
            # Handed over as a mapping: the config's class is made per model and does not pickle.
            read = config
            config = validate_run_config(distributed.from_main(lambda: read().to_dict()), registry)
        device = select_device(config.train.device)
        if device.type == "cuda" and topology.distributed:
            device = torch.device("cuda", topology.local_rank)
        run = Run(
            config, registry, topology, device, out_dir, reporter or RunReporter(), resume=resume, force=force
        )
        run.fit()
        return run


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
    if path.is_dir() and any(p.name != lock.FILENAME for p in path.iterdir()) and not force:
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


def clear_earlier_run(path: Path) -> None:
    """With ``--force``: remove everything an earlier run wrote into ``path`` (weights, metrics,
    evaluations, exports), so that no command takes it for the new run's."""
    for pattern in artifacts.WRITTEN:
        for found in path.glob(pattern):
            if found.is_dir() and not found.is_symlink():
                shutil.rmtree(found)
            else:
                found.unlink(missing_ok=True)


def build_model(
    config: RunConfig,
    registry: Registry,
    data_shape: tuple[int, ...],
    probe: torch.Tensor | None = None,
    data_levels: int | None = None,
) -> GenerativeModel:
    """Build the configured model for images of ``data_shape`` whose pixels take
    ``data_levels`` values as training feeds them (2 binarized, 256 8-bit, None continuous);
    check it on ``probe`` (a batch as training feeds it) if given."""
    entry = registry.get("model", config.model.name)
    check_build_signature(entry, registry.kinds["model"])
    context = ModelContext(
        data_shape=tuple(data_shape),
        build_component=registry.build_component,
        levels=data_levels,
        kinds=registry.component_contexts(),
    )
    model = entry.spec.build(config.model, context)
    if not isinstance(model, GenerativeModel):
        raise PluginError(
            f"plugin '{entry.plugin.name}': model '{entry.name}' built a "
            f"{type(model).__name__}, not a genmod.GenerativeModel"
        )
    if not (model.can("loss") or model.can("training_step")):
        raise PluginError(
            f"plugin '{entry.plugin.name}': model '{entry.name}' ({type(model).__name__}) implements "
            "neither loss nor training_step: genmod cannot train it"
        )
    if probe is not None:
        origin = lambda part: registry.origin(part) or entry.plugin.name  # noqa: E731
        probe_model(model.to(probe.device), probe, entry.name, origin)
    return model


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    _check_state(model.state_dict(), weights)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(
            f"the checkpoint does not match this model or config ({one_line(exc, 150)})"
        ) from None


def _check_state(expected: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> None:
    """Name the missing, unexpected and differently shaped tensors of ``weights``."""
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    shapes = [
        f"{key} is {tuple(getattr(weights[key], 'shape', ()))} in the file, {tuple(expected[key].shape)} for the config"
        for key in sorted(set(expected) & set(weights))
        if not isinstance(weights[key], torch.Tensor) or weights[key].shape != expected[key].shape
    ]
    problems = [
        *([f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"] if missing else []),
        *(
            [f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}"]
            if unexpected
            else []
        ),
        *shapes[:2],
    ]
    if problems:
        raise CheckpointError(f"the checkpoint does not match this model or config: {'; '.join(problems)}")


def _skeleton(
    config: RunConfig, registry: Registry, data_shape: tuple[int, ...], data_levels: int | None
) -> GenerativeModel | None:
    """The model ``config`` builds, on the meta device: shapes without memory (None for a
    model whose plugin cannot be built there; the real build then checks it)."""
    try:
        with torch.device("meta"):
            return build_model(config, registry, data_shape, data_levels=data_levels)
    except GenmodError:
        raise
    except Exception:  # noqa: BLE001 - plugin code that needs real tensors to build
        return None


def check_weights(skeleton: GenerativeModel | None, weights: dict[str, torch.Tensor]) -> None:
    """Compare stored weights with the model's meta-device ``skeleton`` (:func:`_skeleton`),
    before building it for real, so that a config (from a file someone sent) declaring huge
    layers is refused without taking the memory it names."""
    if skeleton is not None:
        _check_state(skeleton.state_dict(), weights)


def check_fits(skeleton: GenerativeModel | None, model: str, data_shape: tuple[int, ...]) -> None:
    """Refuse a model whose training state (weights, gradients, two optimizer moments) would
    not fit in this machine's memory, before allocating any of it (its meta-device
    ``skeleton``): 60 images of 2000x2000 pixels make an MLP of billions of weights."""
    if skeleton is None:
        return
    weights = sum(p.numel() * p.element_size() for p in skeleton.parameters())
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return
    if 4 * weights > memory:
        count = sum(p.numel() for p in skeleton.parameters())
        raise ConfigError(
            f"model '{model}' for images of shape {tuple(data_shape)} has {count:,} weights: "
            f"training them takes {4 * weights / 2**30:,.0f} GB, more than this machine's "
            f"{memory / 2**30:,.0f} GB; use smaller images or a smaller (e.g. convolutional) model"
        )


def load_trained(
    run_dir: Path, registry: Registry, device: torch.device, checkpoint: str | None = None
) -> tuple[RunConfig, GenerativeModel, int, str]:
    """The config, the model with trained weights (in eval mode), the epoch they are from and
    the id of the run that trained them ("" for files of genmod before 0.3).

    ``checkpoint`` is ``best`` (the best validation epoch's weights), ``last``, or ``None``:
    the best where the run kept one (it had a validation set), else the last. A shipped model
    (``pretrained/NAME``) has only ``best.pt`` and the run's config and metrics; ``run_dir``
    may also be a weights file ``genmod export`` wrote.
    """
    config = resolve_run_config(registry, run_dir=run_dir)
    if run_dir.suffix == EXPORTED_SUFFIX and run_dir.is_file():
        if checkpoint is not None:
            raise CheckpointError(f"{run_dir} holds one set of weights: drop --checkpoint")
        state: dict[str, Any] = read_exported(run_dir, config.model.name)
    else:
        state = run_weights(run_dir, config.model.name, checkpoint)
    shape, levels = tuple(state["data_shape"]), state.get("data_levels")
    check_weights(_skeleton(config, registry, shape, levels), state["model"])
    model = build_model(config, registry, shape, data_levels=levels)
    load_weights(model, state["model"])
    return config, model.to(device).eval(), int(state["epoch"]), str(state.get("run", ""))


def run_weights(run_dir: Path, model_name: str, checkpoint: str | None) -> dict[str, Any]:
    """``best.pt`` or the last checkpoint of a run folder, as ``checkpoint`` asks."""
    if checkpoint not in (None, "best", "last"):
        raise ConfigError(f"--checkpoint must be best or last, not '{checkpoint}'")
    has_best, has_last = (run_dir / BEST).is_file(), (run_dir / CHECKPOINT).is_file()
    if checkpoint == "best" and not has_best:
        raise CheckpointError(
            f"{run_dir} kept no best checkpoint (it was trained without data.validation): use --checkpoint last"
        )
    if checkpoint == "last" and has_best and not has_last:
        raise CheckpointError(
            f"{run_dir} holds only the best epoch's weights ({BEST}): drop --checkpoint last"
        )
    if checkpoint != "last" and has_best:
        best = load_weights_file(run_dir / BEST, model_name)
        if has_last:
            _same_run(run_dir, best, load_checkpoint(run_dir / CHECKPOINT, model_name))
        return best
    last = load_checkpoint(run_dir / CHECKPOINT, model_name)
    # The weights commands use: the average, where the run kept one (train.ema_decay).
    return {**last, "model": last.get("evaluated", last["model"])}


def _same_run(run_dir: Path, best: dict[str, Any], last: CheckpointState) -> None:
    """Refuse a ``best.pt`` left by an earlier run in the same folder."""
    ids = best.get("run"), last.get("run")
    if all(ids) and ids[0] != ids[1] or best["epoch"] > last["epoch"]:
        raise CheckpointError(
            f"{run_dir / BEST} is from another run than {run_dir / CHECKPOINT} (an earlier run in this "
            "folder): delete it, or use --checkpoint last"
        )


def _optimizers(model: GenerativeModel, train: TrainConfig, name: str) -> dict[str, torch.optim.Optimizer]:
    """The model's optimizers (:meth:`~genmod.GenerativeModel.configure_optimizers`), checked."""
    optimizers = model.configure_optimizers(optimizer_factory(train))
    if not (
        isinstance(optimizers, dict)
        and optimizers
        and all(isinstance(k, str) and isinstance(v, torch.optim.Optimizer) for k, v in optimizers.items())
    ):
        raise PluginError(
            f"model '{name}': configure_optimizers returned {type(optimizers).__name__}, not a "
            "non-empty dict of torch optimizers by name"
        )
    return optimizers


def _monitored(model: GenerativeModel, config: RunConfig, sampled: Sequence[str] = ()) -> str | None:
    """The metric ``train.monitor`` names, or ``None`` where the run reports no validation
    metrics (no ``data.validation``): then nothing is followed, as in genmod 0.2. ``sampled``:
    the names of the ``train.sample_metrics`` figures."""
    train, splits = config.train, ["train"]
    if config.data.validation and model.can("loss"):  # validation is evaluated with loss()
        splits.append("validation")
    parts = (["loss"] if model.bound is not None else []) + list(model.terms)
    names = [f"{split}/{part}" for split in splits for part in parts]
    names += [name for name in sampled if not name.startswith("test/")]
    if train.monitor in names:
        return train.monitor
    if train.monitor.startswith("validation/") and not config.data.validation:
        return None  # the config's check refuses early stopping and plateau without it
    raise ConfigError(
        f"train.monitor {train.monitor} is not reported by model '{config.model.name}': "
        f"monitor one of {', '.join(names)}"
    )


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 5}}`` -> ``{"train.epochs": 5}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


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
        # Built first, so that a tracker's missing client stops the run before the data loads.
        self.trackers = Trackers(
            {ref.name: registry.build_logger(ref) for ref in train.loggers} if topology.is_main else {}
        )
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
        self.out_dir: Path = distributed.broadcast(out_dir or default_out_dir(config.model.name))
        # rank 0 reads it: the other machines of a multi-node run may lack the folder.
        saved = (
            distributed.from_main(lambda: load_checkpoint(self.out_dir / CHECKPOINT, config.model.name))
            if resume
            else None
        )
        levels = self.data.levels
        skeleton = _skeleton(config, registry, shape, levels)  # built once, on the meta device
        if saved is not None:
            check_weights(skeleton, saved["model"])
        check_fits(skeleton, config.model.name, shape)
        # The probe sees what training feeds: binarized images where training binarizes them.
        first = self.data.train[:2]
        probe = as_float(binarize_once(first) if self.data.dynamic_binarization else first)
        self.model = build_model(config, registry, shape, probe=probe, data_levels=levels)
        self.dtype = autocast_dtype(train.precision, device)
        # The layout decides the convolutions' rounding: set before anything copies the weights.
        self.layout = memory_format(train.memory_format, self.model, self.dtype, device)
        self.model.to(memory_format=LAYOUTS[self.layout])
        self.optimizers = _optimizers(self.model, train, config.model.name)
        self.schedules = {name: Schedule(optimizer, train) for name, optimizer in self.optimizers.items()}
        # genmod's own callbacks first; each is made before compilation (weight averaging
        # copies the model).
        self.callbacks: dict[str, Callback] = {
            **({"ema": WeightAveraging(self.model, train.ema_decay)} if train.ema_decay else {}),
            **self.model.configure_callbacks(train),
        }
        evaluated = next((m for c in self.callbacks.values() if (m := c.evaluated()) is not None), self.model)
        if not isinstance(evaluated, GenerativeModel):
            raise PluginError(
                f"model '{config.model.name}': a callback's evaluated() gave a {type(evaluated).__name__}, "
                "not a genmod.GenerativeModel"
            )
        self.evaluated = evaluated
        self.sampled = self._sample_metrics(registry, device)
        sampled_names = (
            [f"{self.sampled_split}/{name}" for name in self.sampled.figure_names] if self.sampled else []
        )
        self.monitored = _monitored(self.model, config, sampled_names)
        steps = steps_in_epoch(len(self.data.train), train.batch_size) * train.epochs
        self.compiled = compile_wanted(train.compile, steps, COMPILE_MIN_STEPS)
        if self.compiled:
            compile_module(self.model)
        # DistributedDataParallel wraps the automatic loop's model; a model that owns its step
        # calls its parts directly, and each update averages its gradients (training.Step).
        self.trained: torch.nn.Module = (
            DistributedDataParallel(self.model, device_ids=[device] if device.type == "cuda" else None)
            if topology.distributed and not self.model.can("training_step")
            else self.model
        )
        self.scaler = grad_scaler(self.dtype, device)
        # One process of several has its threads set by the launch; alone, it shares the cores.
        self.threads = ThreadShare() if device.type == "cpu" and not topology.distributed else None
        self.rules = UpdateRules(train.clip_grad_norm, train.skip_updates_above)
        self.best: Best | None = None
        self.run_id = uuid.uuid4().hex  # a resumed run takes its checkpoint's (restore)
        self._changes_recorded = False
        self.history: list[EpochRecord] = []
        self.epoch = 0
        self.position: EpochPosition | None = None
        self.resume = resume
        if saved is not None:
            self.restore(saved)
        elif topology.is_main:
            prepare_out_dir(self.out_dir, force=force)
        # Held from here until fit() returns: one writer per folder (genmod.lock).
        self._held = ExitStack()
        if topology.is_main:
            self._held.enter_context(lock.hold(self.out_dir))
            try:
                if force and not resume:
                    clear_earlier_run(self.out_dir)
                stale = lock.remove_stale_temporaries(self.out_dir)
            except BaseException:
                self._held.close()
                raise
            if stale:
                self.reporter.note(
                    f"removed {len(stale)} temporary file(s) a killed write left: {', '.join(stale)}"
                )

    # -- state -------------------------------------------------------------------------
    def state(self) -> CheckpointState:
        position = self.position
        state = CheckpointState(
            model_name=self.config.model.name,
            config=self.config.to_dict(),
            epoch=self.epoch,
            position=None
            if position is None
            else {
                "order_state": position.order_state,
                "step": position.step,
                "totals": distributed.gather(position.totals.cpu()),
                "skipped": position.skipped,
            },
            data_shape=list(self.data.train.shape[1:]),
            data_levels=self.data.levels,
            model=self.model.state_dict(),
            optimizer={name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
            schedule={name: schedule.state_dict() for name, schedule in self.schedules.items()},
            callbacks={name: callback.state_dict() for name, callback in self.callbacks.items()},
            scaler=self.scaler.state_dict(),
            best=self.best,
            rng={
                "torch": distributed.gather(torch.get_rng_state()),
                "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                "data": self.generator.get_state(),
            },
            history=[record.model_dump() for record in self.history],
            run=self.run_id,
        )
        if self.evaluated is not self.model:
            state["evaluated"] = self.evaluated.state_dict()
        return state

    def restore(self, state: CheckpointState) -> None:
        load_weights(self.model, state["model"])
        if self.evaluated is not self.model and "evaluated" in state:
            load_weights(self.evaluated, state["evaluated"])
        optimizers, schedules = state["optimizer"], state["schedule"]
        if "param_groups" in optimizers:  # one optimizer's state: a checkpoint before genmod 0.3
            optimizers, schedules = {"model": optimizers}, {"model": schedules}
        if set(optimizers) != set(self.optimizers):
            raise CheckpointError(
                f"the checkpoint holds optimizers {', '.join(optimizers)}; the model now configures "
                f"{', '.join(self.optimizers)}"
            )
        try:
            for name, optimizer in self.optimizers.items():
                optimizer.load_state_dict(optimizers[name])
                self.schedules[name].load_state_dict(schedules[name])
            if state.get("scaler"):  # float16 runs only; {} from a disabled scaler
                self.scaler.load_state_dict(state["scaler"])
            saved_callbacks = state.get("callbacks", {})
            for name, callback in self.callbacks.items():
                if name in saved_callbacks:  # else it starts now (train.ema_decay set on resume)
                    callback.load_state_dict(saved_callbacks[name])
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(
                f"the checkpoint's optimizer or callback state does not match this config ({exc})"
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
        self.run_id = state.get("run") or self.run_id
        self.epoch = int(state["epoch"])
        self.best = state["best"]
        saved = state["position"]
        if saved is None:
            self.position = None
        else:
            totals = saved["totals"]  # a tensor in checkpoints of single-process runs before 0.3
            mine = totals[self.topology.rank] if isinstance(totals, list) else totals
            self.position = EpochPosition(saved["order_state"], mine, saved["step"], saved["skipped"])

    def checkpoint(self, *, best: bool = False) -> None:
        """Save the full state; with ``best``, also these weights as the best epoch's.

        The checkpoint is written before anything else of the epoch (metrics, samples, a
        resumed run's changed config), so a failure after it loses no training.
        """
        state = self.state()  # every rank takes part in gathering the RNG states
        if self.topology.is_main:
            save_checkpoint(self.out_dir / CHECKPOINT, state)
            if best:
                save_best(self.out_dir / BEST, state)
            if self.resume and not self._changes_recorded:
                self._record_changes()
                self._changes_recorded = True

    def stopped_early(self) -> bool:
        patience = self.config.train.early_stopping
        return patience is not None and self.best is not None and self.best["since"] >= patience

    # -- outputs -------------------------------------------------------------------------
    @torch.inference_mode()
    def save_samples(self) -> None:
        """A grid from the same random draws every time, without touching the training RNG."""
        self.evaluated.eval()
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.config.train.seed)
            images = self.evaluated.sample(self.config.train.samples)
        path = self.out_dir / artifacts.samples_name(self.epoch)
        artifacts.save_grid(images, path)
        self.trackers.log_images([path], self.epoch)

    @torch.inference_mode()
    def save_final_outputs(self) -> None:
        self.evaluated.eval()
        if self.evaluated.can("reconstruct"):
            originals = as_float(self.data.test[:32])
            artifacts.save_reconstructions(
                originals, self.evaluated.reconstruct(originals), self.out_dir / artifacts.RECONSTRUCTIONS
            )
        artifacts.plot_losses(self.history, self.out_dir / artifacts.LOSS_PLOT)
        written = [self.out_dir / name for name in (artifacts.RECONSTRUCTIONS, artifacts.LOSS_PLOT)]
        self.trackers.log_images([path for path in written if path.is_file()], self.epoch)

    def _complete(self) -> str:
        done = f"{self.out_dir} is complete: {self.epoch} epochs"
        if self.stopped_early() and self.best is not None:
            return f"{done}, stopped early\n(best {self.monitored} at epoch {self.best['epoch']}); nothing to train"
        return (
            f"{done}. Train it further with:\n  genmod run --resume {self.out_dir} --epochs {self.epoch + 10}"
        )

    def _record_changes(self) -> None:
        """On resume: ``config.yaml`` takes the changed settings (``--epochs``, ``--device``), and
        ``changes.log`` keeps what changed when."""
        saved = _flat(artifacts.read_config(self.out_dir / artifacts.CONFIG))
        now = _flat(self.config.to_dict())
        changed = [
            f"{key} {saved.get(key)!r} -> {value!r}" for key, value in now.items() if saved.get(key) != value
        ]
        if changed:
            artifacts.write_config(self.config.to_dict(), self.out_dir / artifacts.CONFIG)
            with (self.out_dir / artifacts.CHANGES).open("a") as log:
                log.write(
                    f"{datetime.now():%Y-%m-%d %H:%M:%S} resumed after epoch {self.epoch}: {', '.join(changed)}\n"
                )

    def _evaluate(self, images: torch.Tensor, stops: _StopRequests) -> SplitMetrics | None:
        """The bound over ``images``, each process evaluating its share; ``None`` if a stop
        was requested meanwhile (single-process runs only: under torchrun none is)."""
        rank, world = self.topology.rank, self.topology.world_size
        totals = evaluate(
            self.evaluated,
            images.tensor_split(world)[rank],
            self.config.train.eval_batch_size,
            self.dtype,
            should_stop=lambda: stops.requested,
        )
        if totals is None:
            return None
        return self._metrics(distributed.all_reduce_sum(totals))

    def _metrics(self, totals: torch.Tensor) -> SplitMetrics:
        return SplitMetrics.from_totals(totals, self.model.terms, bounded=self.model.bound is not None)

    def _where(self) -> str:
        world = self.topology.world_size
        backend = distributed.backend(self.device)
        return str(self.device) + (f", {world} processes ({backend})" if world > 1 else "")

    def _arithmetic(self) -> str:
        layout = ", channels-last" if self.layout == "channels_last" else ""
        return precision_name(self.dtype) + (", compiled" if self.compiled else "") + layout

    def _sample_metrics(self, registry: Registry, device: torch.device) -> SampleMetrics | None:
        """``train.sample_metrics`` against the validation split (the test split without one:
        reported, never followed)."""
        config = self.config.train.sample_metrics
        self.sampled_split = "validation" if self.data.validation is not None else "test"
        if config is None:
            return None
        reference = (self.data.validation if self.data.validation is not None else self.data.test).cpu()
        if self.data.dynamic_binarization:
            reference = binarize_once(reference)
        dataset = self.config.data.name
        return SampleMetrics(
            registry,
            config.metrics,
            reference,
            f"{self.sampled_split} split of {dataset}",
            dataset,
            config.features,
            config.features_weights,
            device,
            batch=max(1, self.config.train.eval_batch_size // self.model.evaluation_cost),
        )

    # -- the loop --------------------------------------------------------------------------
    def fit(self) -> list[EpochRecord]:
        """Train the remaining epochs; returns the per-epoch metrics."""
        with self._held:
            train = self.config.train
            main = self.topology.is_main
            if self.resume and (self.epoch >= train.epochs or self.stopped_early()):
                self.reporter.note(self._complete())
                return self.history
            if main:
                config = self.config.to_dict()
                for line in self.trackers.open(self.out_dir, config, _flat(config)):
                    self.reporter.note(line)
            if self.threads is not None:
                self.threads.start()
            try:
                return self._fit()
            finally:
                self.trackers.close()
                if self.threads is not None:
                    self.threads.restore()

    def _fit(self) -> list[EpochRecord]:
        train = self.config.train
        main = self.topology.is_main
        if main and not self.resume:
            artifacts.write_config(self.config.to_dict(), self.out_dir / artifacts.CONFIG)
            if 0 in train.sample_epochs:
                self.save_samples()
        if main:
            machine.record(
                self.out_dir,
                self.epoch + 1,
                precision_name(self.dtype),
                self.compiled,
                self.layout,
                self.device,
            )
        parameters = sum(p.numel() for p in self.model.parameters())
        self.reporter.start(
            self.config.model.name,
            self.out_dir,
            self._where(),
            self._arithmetic(),
            parameters,
            self.epoch + 1,
            self.resume,
            dims=None if self.model.levels is None else math.prod(self.data.train.shape[1:]),
            quantity=self.model.bound,
        )
        stops = _StopRequests()
        # Under torchrun every process gets the signal at its own moment, so ranks could stop
        # at different steps: there the default handlers end the run, which resumes from its
        # last completed epoch.
        guard = stops.installed() if not self.topology.distributed else nullcontext()
        try:
            with guard:
                while self.epoch < train.epochs and not stops.requested and not self.stopped_early():
                    self._epoch(stops)
                if stops.requested and self.position is not None:
                    self.checkpoint()  # stopped mid-epoch: save exactly where
        except _StopNow:
            raise Interrupted(
                f"stopped at once; the checkpoint of epoch {self.epoch} is kept. Continue with:\n"
                f"  genmod run --resume {self.out_dir}"
                if self.epoch
                else "stopped at once, before the first checkpoint; nothing to resume"
            ) from None
        finally:
            self.reporter.stop()
        if stops.requested and self.epoch < train.epochs:
            done = (
                f"epoch {self.epoch + 1}, step {self.position.step}"
                if self.position
                else f"epoch {self.epoch}"
            )
            raise Interrupted(
                f"stopped; training up to {done} is saved. Continue with:\n  genmod run --resume {self.out_dir}"
            )
        if main:
            self.save_final_outputs()
            if self.stopped_early() and self.best is not None:
                self.reporter.note(
                    f"stopped early: {self.monitored} has not improved for {self.best['since']} evaluations "
                    f"(best {self.best['loss']:.2f} at epoch {self.best['epoch']}, kept in {BEST})"
                )
            best = None if self.best is None or self.monitored is None else self.best
            self.reporter.summary(
                self.history,
                self.out_dir,
                None if best is None else (str(self.monitored), best["loss"], best["epoch"]),
            )
        return self.history

    def _epoch(self, stops: _StopRequests) -> None:
        """Train one epoch (or up to a requested stop), then evaluate, record and checkpoint."""
        train = self.config.train
        epoch = self.epoch + 1
        steps = steps_in_epoch(len(self.data.train), train.batch_size)
        self.reporter.epoch_started(epoch, train.epochs, steps)
        started = time.perf_counter()
        lr = next(iter(self.optimizers.values())).param_groups[0]["lr"]
        every = train.checkpoint_every
        while True:
            self.position = train_epoch(
                self.trained,
                self.optimizers,
                self.data.train,
                train.batch_size,
                self.generator,
                epoch,
                self.position,
                rules=self.rules,
                scaler=self.scaler,
                on_progress=self.reporter.step,
                after_step=self._after_step,
                binarize=self.data.dynamic_binarization,
                should_stop=lambda step: stops.requested or (every is not None and step % every == 0),
                shard=(self.topology.rank, self.topology.world_size),
                dtype=self.dtype,
                workers=self.config.data.workers,
            )
            if self.position.step == steps or stops.requested:
                break
            self.checkpoint()  # train.checkpoint_every: a killed run resumes from here
        if self.position.step < steps:
            return  # stopped mid-epoch: fit checkpoints this position
        fit = self._metrics(distributed.all_reduce_sum(self.position.totals))
        validation = test = None
        # Evaluated with the model's loss(): a model without one (a GAN) reports training only.
        if self.model.can("loss") and (epoch % train.eval_every == 0 or epoch == train.epochs):
            cuda = [self.device] if self.device.type == "cuda" else []
            before = torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in cuda]
            validation = None if self.data.validation is None else self._evaluate(self.data.validation, stops)
            test = self._evaluate(self.data.test[: self.config.data.test_limit], stops)
            if stops.requested or test is None:
                # The epoch's training is done: fit checkpoints it, with the random state from
                # before the evaluation, so that a resume evaluates it exactly as now.
                torch.set_rng_state(before[0])
                for device, state in zip(cuda, before[1], strict=True):
                    torch.cuda.set_rng_state(state, device)
                return
        sampled, wanted = self.sampled, train.sample_metrics
        if (
            sampled is not None
            and wanted is not None
            and (epoch % wanted.every == 0 or epoch == train.epochs)
        ):
            figures = {"sample_quality": sampled.figures(self.evaluated, wanted.samples, train.seed + epoch)}
            if self.sampled_split == "validation":
                validation = (validation or SplitMetrics(loss=None, terms={})).model_copy(update=figures)
            else:
                test = (test or SplitMetrics(loss=None, terms={})).model_copy(update=figures)
        skipped = int(distributed.all_reduce_sum(torch.tensor(self.position.skipped)))
        record = EpochRecord(
            epoch=epoch,
            quantity=self.model.bound,
            train=fit,
            validation=validation,
            test=test,
            lr=lr,
            seconds=time.perf_counter() - started,
            skipped=skipped // self.topology.world_size,  # every process skips the same steps
        )
        value = record.scalars().get(self.monitored) if self.monitored else None
        for schedule in self.schedules.values():
            schedule.step(value)
        self.epoch, self.position = epoch, None
        self.history.append(record)
        improved = value is not None and (self.best is None or self._better(value, self.best["loss"]))
        if value is not None and improved:
            self.best = Best(epoch=epoch, loss=value, since=0)
        elif value is not None and self.best is not None:
            self.best = Best(epoch=self.best["epoch"], loss=self.best["loss"], since=self.best["since"] + 1)
        for callback in self.callbacks.values():
            callback.on_epoch_end(self.model, record)
        last = epoch == train.epochs or self.stopped_early()
        self.checkpoint(best=improved)
        if self.topology.is_main:
            write_metrics(self.history, self.out_dir / artifacts.METRICS)
            if epoch in train.sample_epochs or last:
                self.save_samples()
            self.trackers.log(record)
        self.reporter.epoch_done(record, train.epochs)

    def _after_step(self) -> None:
        if self.threads is not None and (threads := self.threads.adjust()) is not None:
            machine.note_threads(self.out_dir, self.epoch + 1, threads)
        for callback in self.callbacks.values():
            callback.on_step_end(self.model)

    def _better(self, value: float, best: float) -> bool:
        return value < best if self.config.train.monitor_mode == "min" else value > best
