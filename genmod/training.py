"""The training and evaluation loops over in-memory tensors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from genmod.errors import TrainingError

# How many steps pass between reads of the loss on the host: each read is a device sync.
REPORT_EVERY = 20


@dataclass
class EpochPosition:
    """How far an epoch has got: enough to continue it exactly after a checkpoint."""

    order_state: Tensor
    """The data-order generator's state at the start of the epoch."""
    step: int = 0
    """Global batches done."""
    totals: Tensor = field(default_factory=lambda: torch.zeros(4))
    """Sums of (-ELBO, reconstruction, KL, images) over this process's share of them
    (read by ``metrics.SplitMetrics.from_totals``)."""


def _summed_terms(model: torch.nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """The objective for ``x`` and the sums of (-ELBO, reconstruction, KL, images), detached."""
    loss, terms = model(x)
    count = torch.tensor(float(len(x)), device=x.device)
    return loss, torch.stack(
        (terms.negative_elbo.sum(), terms.reconstruction.sum(), terms.kl.sum(), count)
    ).detach()


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    batch_size: int,
    generator: torch.Generator,
    epoch: int,
    position: EpochPosition | None = None,
    *,
    on_progress: Callable[[int, float], None] = lambda steps, loss: None,
    binarize: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    shard: tuple[int, int] = (0, 1),
) -> EpochPosition:
    """Train on ``images`` in an order drawn from ``generator``, from ``position`` onwards.

    Returns the position reached: the whole epoch, or the step after which ``should_stop()``
    said to stop. With ``binarize`` each batch is a fresh Bernoulli draw of its pixels; with
    ``shard=(rank, world)`` this process takes its slice of every global batch.
    ``on_progress(steps_done, recent_loss)`` is called every :data:`REPORT_EVERY` steps. A
    non-finite loss raises :class:`TrainingError` naming the epoch and step, before the
    corrupted parameters can be checkpointed.
    """
    model.train()
    if position is None:
        position = EpochPosition(generator.get_state())
    generator.set_state(position.order_state)
    order = torch.randperm(len(images), generator=generator).to(images.device)
    position.totals = position.totals.to(images.device)
    rank, world = shard
    batches = order.split(batch_size)
    recent: list[Tensor] = []
    for step in range(position.step + 1, len(batches) + 1):
        index = batches[step - 1]
        if len(index) >= world:  # a last batch too small to give every process a share is left out
            x = images[index.tensor_split(world)[rank]]
            loss, sums = _summed_terms(model, torch.bernoulli(x) if binarize else x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            position.totals += sums
            recent.append(loss.detach())
        position.step = step
        if recent and (step % REPORT_EVERY == 0 or step == len(batches)):
            _check_finite(recent, step, epoch)
            on_progress(step, float(torch.stack(recent).mean()))
            recent.clear()
        if should_stop() and step < len(batches):
            if recent:
                _check_finite(recent, step, epoch)
            break
    return position


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
def evaluate(model: torch.nn.Module, images: Tensor, batch_size: int) -> Tensor:
    """Sums of (-ELBO, reconstruction, KL, images) over ``images``, one posterior sample each."""
    model.eval()
    totals = torch.zeros(4, device=images.device)
    for x in images.split(batch_size):
        totals += _summed_terms(model, x)[1]
    return totals
