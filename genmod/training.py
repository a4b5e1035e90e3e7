"""The training and evaluation loops over in-memory tensors."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from genmod.data import TrainingImages, as_float
from genmod.errors import TrainingError
from genmod.model import Bound, GenerativeModel, TrainingProgress
from genmod.precision import autocast
from genmod.step import Step, UpdateRules

# How many steps pass between reads of the loss on the host: each read is a device sync.
REPORT_EVERY = 20


@dataclass
class EpochPosition:
    """How far an epoch has got: enough to continue it exactly after a checkpoint."""

    order_state: Tensor
    """The data-order generator's state at the start of the epoch."""
    totals: Tensor
    """Sums of (bound, *terms, images) over this process's share of the steps done
    (read by ``metrics.SplitMetrics.from_totals``)."""
    step: int = 0
    """Global batches done."""
    skipped: int = 0
    """Updates skipped for a gradient norm above ``train.skip_updates_above`` or not finite."""


def unwrapped(model: torch.nn.Module) -> GenerativeModel:
    """The model itself, under a DistributedDataParallel wrapper if there is one."""
    inner = getattr(model, "module", model)
    assert isinstance(inner, GenerativeModel)
    return inner


def bound_sums(model: GenerativeModel, bound: Bound, images: int, device: torch.device) -> Tensor:
    """The sums of (bound, *terms, images) of a batch, float32 and detached (0 in the bound's
    place for a model without one)."""
    value = torch.zeros((), device=device) if bound.value is None else bound.value.float().sum()
    terms = [bound.terms[name].float().sum() for name in model.terms]
    count = torch.tensor(float(images), device=device)
    return torch.stack((value, *terms, count)).detach()


def new_totals(model: torch.nn.Module, device: torch.device | str = "cpu") -> Tensor:
    return torch.zeros(len(unwrapped(model).terms) + 2, device=device)


def train_epoch(
    model: torch.nn.Module,
    optimizers: torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer],
    images: TrainingImages,
    batch_size: int,
    generator: torch.Generator,
    epoch: int,
    position: EpochPosition | None = None,
    *,
    rules: UpdateRules = UpdateRules(),
    scaler: torch.amp.GradScaler | None = None,
    on_progress: Callable[[int, float], None] = lambda steps, loss: None,
    after_step: Callable[[], None] = lambda: None,
    binarize: bool = False,
    should_stop: Callable[[int], bool] = lambda step: False,
    shard: tuple[int, int] = (0, 1),
    dtype: torch.dtype | None = None,
    workers: int = 1,
) -> EpochPosition:
    """Train on ``images`` (as stored: see :class:`~genmod.data.Data`) in an order drawn from
    ``generator``, from ``position`` onwards.

    Each batch is one call of the model's :meth:`~genmod.GenerativeModel.training_step` with a
    :class:`Step` over ``optimizers`` (one optimizer is the model's ``model``), then
    ``after_step()`` (the callbacks). Returns the position reached: the whole epoch, or the
    step after which ``should_stop(step)`` said to stop. A streamed set
    (:class:`~genmod.streaming.StreamingImages`) is decoded by ``workers`` processes, in its own
    order seeded by ``generator``'s seed. With ``binarize`` each batch is a fresh Bernoulli draw
    of its pixels; with ``shard=(rank, world)`` this process takes its slice of every global
    batch; with ``dtype`` (``train.precision``) the step runs under autocast to it, and
    ``scaler`` (float16's :func:`~genmod.precision.grad_scaler`) scales the losses and skips
    updates whose scaled gradients overflowed. Before each step the model's
    :attr:`~genmod.GenerativeModel.progress` is set, so schedules inside the model (KL warm-up)
    follow the checkpointed position. ``on_progress(steps_done, recent_loss)`` is called every
    :data:`REPORT_EVERY` steps. A non-finite loss raises :class:`TrainingError` naming the
    epoch and step, before the corrupted parameters can be checkpointed; with
    ``rules.skip_above`` set, an update with a non-finite gradient is skipped instead.
    """
    model.train()
    target = unwrapped(model)
    if isinstance(optimizers, torch.optim.Optimizer):
        optimizers = {"model": optimizers}
    if position is None:
        position = EpochPosition(generator.get_state(), new_totals(model))
    generator.set_state(position.order_state)
    device = next(model.parameters()).device
    position.totals = position.totals.to(device)
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
    # Without DistributedDataParallel's wrapper (a model that owns its step), each update
    # averages its own gradients over the processes.
    average = shard[1] > 1 and model is target
    steps = steps_in_epoch(len(images), batch_size)
    if isinstance(images, Tensor):
        order = torch.randperm(len(images), generator=generator).to(images.device)
        batches = _batches_in_memory(images, order, batch_size, shard, position.step)
    else:
        seed, world = generator.initial_seed(), shard[1]
        batches = images.batches(epoch, position.step, batch_size, seed, world, workers, device)
    recent: list[Tensor] = []
    stopped = False
    for step, batch in zip(range(position.step + 1, steps + 1), batches, strict=False):
        if batch is not None:
            target.progress = TrainingProgress(epoch=epoch, step=step - 1, steps_per_epoch=steps)
            x = as_float(batch)
            x = torch.bernoulli(x) if binarize else x
            update = Step(model, optimizers, scaler, rules, average)
            with autocast(dtype, x.device):
                bound = target.training_step(x, update)
            if update.skipped:
                position.skipped += update.skipped
            else:
                position.totals += bound_sums(target, bound, len(x), device)
            if update.losses:
                recent.append(torch.stack(update.losses).sum())
            scaler.update()
            after_step()
        position.step = step
        if recent and (step % REPORT_EVERY == 0 or step == steps):
            _check_finite(recent, step, epoch)
            on_progress(step, float(torch.stack(recent).mean()))
            recent.clear()
        if should_stop(step) and step < steps:
            if recent:
                _check_finite(recent, step, epoch)
            stopped = True
            break
    if not stopped and position.step < steps:
        raise TrainingError(
            f"the training set gave {position.step} of the {steps} batches of epoch {epoch}: "
            "repack it with `genmod data pack`"
        )
    return position


def _batches_in_memory(
    images: Tensor, order: Tensor, batch_size: int, shard: tuple[int, int], start: int
) -> Iterator[Tensor | None]:
    """This process's share of each global batch in ``order``, from batch ``start`` on; None
    for a last batch too small to give every process a share (every process leaves it out)."""
    rank, world = shard
    for index in order.split(batch_size)[start:]:
        # index_select, not images[index]: advanced indexing took 10x longer on uint8 images.
        yield images.index_select(0, index.tensor_split(world)[rank]) if len(index) >= world else None


def _check_finite(recent: list[Tensor], step: int, epoch: int) -> None:
    values = torch.stack(recent)
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0])
        raise TrainingError(
            f"loss became {values[first].item()} at epoch {epoch}, step {step - len(recent) + 1 + first}; "
            "lower train.lr or check the data"
        )


def steps_in_epoch(images: int, batch_size: int) -> int:
    return -(-images // batch_size)


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module,
    images: Tensor,
    batch_size: int,
    dtype: torch.dtype | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Tensor | None:
    """Sums of (bound, *terms, images) of the model's :meth:`~genmod.GenerativeModel.loss`
    over ``images`` (one posterior sample each, for a VAE); ``None`` when ``should_stop()``
    turns true between batches (a Ctrl-C is never kept waiting)."""
    model.eval()
    target = unwrapped(model)
    totals = new_totals(model, images.device)
    for x in images.split(batch_size):
        if should_stop():
            return None
        with autocast(dtype, x.device):
            bound = model(as_float(x))[1]  # forward: the compiled graph, where there is one
        totals += bound_sums(target, bound, len(x), images.device)
    return totals
