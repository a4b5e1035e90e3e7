"""The training and evaluation loops over in-memory tensors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from genmod.errors import TrainingError
from genmod.vae import VAE

# How many steps pass between reads of the loss on the host: each read is a device sync.
REPORT_EVERY = 20


@dataclass(frozen=True)
class EpochStats:
    """Per-image means over an epoch or a dataset, in nats."""

    loss: float
    reconstruction: float
    kl: float


def _summed_terms(model: torch.nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """The objective for ``x`` and the batch sums of (-ELBO, reconstruction, KL), detached."""
    loss, terms = model(x)
    sums = torch.stack((terms.negative_elbo.sum(), terms.reconstruction.sum(), terms.kl.sum()))
    return loss, sums.detach()


def _stats(totals: Tensor, n: int) -> EpochStats:
    loss, rec, kl = (totals / n).tolist()
    return EpochStats(loss=loss, reconstruction=rec, kl=kl)


def train_epoch(
    model: VAE,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    batch_size: int,
    generator: torch.Generator,
    epoch: int,
    on_progress: Callable[[int, float], None] = lambda steps, loss: None,
    binarize: bool = False,
) -> EpochStats:
    """One pass over ``images`` in an order drawn from ``generator``.

    With ``binarize``, each batch is replaced by a fresh Bernoulli draw of its pixels.

    ``on_progress(steps_done, recent_loss)`` is called every :data:`REPORT_EVERY` steps.
    A non-finite loss raises :class:`TrainingError` naming the epoch and step, before the
    corrupted parameters can be checkpointed.
    """
    model.train()
    order = torch.randperm(len(images), generator=generator).to(images.device)
    totals = torch.zeros(3, device=images.device)
    recent: list[Tensor] = []
    batches = order.split(batch_size)
    for step, index in enumerate(batches, start=1):
        x = images[index]
        loss, sums = _summed_terms(model, torch.bernoulli(x) if binarize else x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        totals += sums
        recent.append(loss.detach())
        if step % REPORT_EVERY == 0 or step == len(batches):
            values = torch.stack(recent)
            finite = torch.isfinite(values)
            if not bool(finite.all()):
                first = int((~finite).nonzero()[0])
                raise TrainingError(
                    f"loss became {values[first].item()} at epoch {epoch}, step "
                    f"{step - len(recent) + 1 + first}; lower train.lr or check the data"
                )
            on_progress(step, float(values.mean()))
            recent.clear()
    return _stats(totals, len(images))


@torch.inference_mode()
def evaluate(model: VAE, images: Tensor, batch_size: int) -> EpochStats:
    """The mean negative ELBO and its terms over ``images`` (one posterior sample each)."""
    model.eval()
    totals = torch.zeros(3, device=images.device)
    for x in images.split(batch_size):
        totals += _summed_terms(model, x)[1]
    return _stats(totals, len(images))
