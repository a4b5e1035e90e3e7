"""Code that runs after every training step and every epoch: a model's callbacks, and the
weight averaging ``train.ema_decay`` asks for.

A model returns its callbacks from :meth:`~genmod.GenerativeModel.configure_callbacks`; the
runner calls them in that order, after genmod's own, and checkpoints their state, so that a
resumed run continues them exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

if TYPE_CHECKING:
    from torch import nn

    from genmod.metrics import EpochRecord


class Callback:
    """Acts on the model after each training step (every optimizer update of a batch) and
    each epoch. Override what you need; state that must survive a resume goes in
    :meth:`state_dict`."""

    def on_step_end(self, model: nn.Module) -> None:
        """After each training step, before the next batch."""

    def on_epoch_end(self, model: nn.Module, record: EpochRecord) -> None:
        """After each epoch's evaluation, before its checkpoint."""

    def evaluated(self) -> nn.Module | None:
        """The model evaluation, sampling and ``best.pt`` use instead of the trained one (the
        average of :class:`WeightAveraging`), or ``None``. The runner checkpoints its weights."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """What the callback needs to continue exactly after a resume (tensors and plain data)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class WeightAveraging(Callback):
    """An exponential moving average of the weights, updated after every step
    (``train.ema_decay``): torch's :class:`~torch.optim.swa_utils.AveragedModel`, buffers
    included, so normalization statistics are averaged too.

    Its decay warms up as diffusers' ``EMAModel`` and TensorFlow's moving averages do, to
    ``min(decay, (1 + n) / (10 + n))`` at the n-th update: with 0.999 from the first step, the
    first, untrained weights would still make up 8% of the average after 2,500 steps."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.averaged = AveragedModel(model, multi_avg_fn=self._lerp, use_buffers=True)
        self.averaged.requires_grad_(False)

    def _lerp(
        self,
        averaged: list[torch.Tensor] | tuple[torch.Tensor, ...],
        current: list[torch.Tensor] | tuple[torch.Tensor, ...],
        n: torch.Tensor | int,
    ) -> None:
        # Called once per device and dtype of the weights: the count is the callback's own.
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        get_ema_multi_avg_fn(decay)(averaged, current, n)

    def on_step_end(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)  # the first update copies the weights
        self.updates += 1

    def evaluated(self) -> nn.Module:
        module: nn.Module = self.averaged.module
        return module

    def state_dict(self) -> dict[str, Any]:
        # The averaged weights themselves are checkpointed by the runner, as the evaluated model's.
        return {"n_averaged": self.averaged.n_averaged.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.n_averaged.copy_(torch.as_tensor(state["n_averaged"]))
        self.updates = int(state["n_averaged"])
