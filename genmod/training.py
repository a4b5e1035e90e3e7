"""The training and evaluation loops over in-memory tensors."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from genmod.data import TrainingImages, as_float
from genmod.errors import TrainingError
from genmod.model import GenerativeModel, TrainingProgress
from genmod.precision import autocast

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


@dataclass(frozen=True)
class UpdateRules:
    """How gradients become updates: ``train.clip_grad_norm`` and ``train.skip_updates_above``."""

    clip_grad_norm: float | None = None
    skip_above: float | None = None

    def apply(self, parameters: Sequence[torch.nn.Parameter]) -> bool:
        """Clip the (unscaled) gradients in place; return False when the update must be skipped."""
        if self.clip_grad_norm is None and self.skip_above is None:
            return True
        norm = torch.nn.utils.clip_grad_norm_(parameters, self.clip_grad_norm or math.inf)
        if self.skip_above is None:
            return True
        return bool(torch.isfinite(norm)) and float(norm) <= self.skip_above


def unwrapped(model: torch.nn.Module) -> GenerativeModel:
    """The model itself, under a DistributedDataParallel wrapper if there is one."""
    inner = getattr(model, "module", model)
    assert isinstance(inner, GenerativeModel)
    return inner


def _summed_terms(model: torch.nn.Module, x: Tensor, dtype: torch.dtype | None) -> tuple[Tensor, Tensor]:
    """The objective for ``x`` and the sums of (bound, *terms, images), detached; the layers
    run in ``dtype`` (None: float32), the sums are float32."""
    with autocast(dtype, x.device):
        loss, bound = model(x)
    count = torch.tensor(float(len(x)), device=x.device)
    terms = [bound.terms[name].float().sum() for name in unwrapped(model).terms]
    return loss.float(), torch.stack((bound.value.float().sum(), *terms, count)).detach()


def new_totals(model: torch.nn.Module, device: torch.device | str = "cpu") -> Tensor:
    return torch.zeros(len(unwrapped(model).terms) + 2, device=device)


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: TrainingImages,
    batch_size: int,
    generator: torch.Generator,
    epoch: int,
    position: EpochPosition | None = None,
    *,
    rules: UpdateRules = UpdateRules(),
    scaler: torch.amp.GradScaler | None = None,
    on_progress: Callable[[int, float], None] = lambda steps, loss: None,
    binarize: bool = False,
    should_stop: Callable[[int], bool] = lambda step: False,
    shard: tuple[int, int] = (0, 1),
    dtype: torch.dtype | None = None,
    workers: int = 1,
) -> EpochPosition:
    """Train on ``images`` (as stored: see :class:`~genmod.data.Data`) in an order drawn from
    ``generator``, from ``position`` onwards.

    Returns the position reached: the whole epoch, or the step after which
    ``should_stop(step)`` said to stop. A streamed set (:class:`~genmod.streaming.StreamingImages`)
    is decoded by ``workers`` processes, in its own order seeded by ``generator``'s seed. With ``binarize`` each batch is a fresh Bernoulli draw of its pixels; with
    ``shard=(rank, world)`` this process takes its slice of every global batch; with ``dtype``
    (``train.precision``) the forward pass runs under autocast to it, and ``scaler`` (float16's
    :func:`~genmod.precision.grad_scaler`) scales the loss and skips steps whose scaled
    gradients overflowed. Before each
    step the model's :attr:`~genmod.GenerativeModel.progress` is set, so schedules inside the
    model (KL warm-up) follow the checkpointed position. ``on_progress(steps_done,
    recent_loss)`` is called every :data:`REPORT_EVERY` steps. A non-finite loss raises
    :class:`TrainingError` naming the epoch and step, before the corrupted parameters can be
    checkpointed; with ``rules.skip_above`` set, a step with a non-finite gradient is skipped
    instead.
    """
    model.train()
    target = unwrapped(model)
    if position is None:
        position = EpochPosition(generator.get_state(), new_totals(model))
    generator.set_state(position.order_state)
    device = next(model.parameters()).device
    position.totals = position.totals.to(device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
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
            loss, sums = _summed_terms(model, torch.bernoulli(x) if binarize else x, dtype)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # the rules see the true gradients
            if rules.apply(parameters):
                scaler.step(optimizer)
                position.totals += sums
                recent.append(loss.detach())
            else:
                position.skipped += 1
            scaler.update()
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
    """Sums of (bound, *terms, images) over ``images``, one posterior sample each; ``None``
    when ``should_stop()`` turns true between batches (a Ctrl-C is never kept waiting)."""
    model.eval()
    totals = new_totals(model, images.device)
    for x in images.split(batch_size):
        if should_stop():
            return None
        totals += _summed_terms(model, as_float(x), dtype)[1]
    return totals
