"""One training step's updates: how a loss becomes a change of the weights.

The automatic loop and a model's own :meth:`~genmod.GenerativeModel.training_step` both update
through :class:`Step`, so precision, clipping, skipping and processes are handled once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from genmod import distributed
from genmod.bound import Bound
from genmod.errors import TrainingError


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


class Step:
    """What a model's :meth:`~genmod.GenerativeModel.training_step` updates its weights with.

    Like Lightning's manual optimization, with what genmod's loop does for every optimizer:
    backward outside autocast with ``train.precision``'s gradient scaler, the gradients
    averaged over processes, ``train.clip_grad_norm`` and ``train.skip_updates_above``, and
    the optimizer step. Made by the loop for each batch.
    """

    def __init__(
        self,
        trained: torch.nn.Module,
        optimizers: Mapping[str, torch.optim.Optimizer],
        scaler: torch.amp.GradScaler,
        rules: UpdateRules,
        average_gradients: bool,
    ) -> None:
        self.optimizers = optimizers
        """The model's optimizers, by the names its ``configure_optimizers`` gave them."""
        self._trained = trained
        self._scaler = scaler
        self._rules = rules
        self._average = average_gradients
        self.losses: list[Tensor] = []
        """The losses of the updates applied in this step (the progress bar shows their sum)."""
        self.skipped = 0
        """Updates skipped in this step (``train.skip_updates_above``)."""

    def forward(self, x: Tensor) -> tuple[Tensor, Bound]:
        """The model's :meth:`~genmod.GenerativeModel.loss`, through the process group's
        wrapper when there is one (the automatic loop's path)."""
        result: tuple[Tensor, Bound] = self._trained(x)
        return result

    def update(self, loss: Tensor, optimizer: str = "model") -> bool:
        """Backpropagate ``loss`` and step the optimizer named ``optimizer`` over its own
        parameters' gradients; returns False when ``train.skip_updates_above`` skipped it."""
        try:
            chosen = self.optimizers[optimizer]
        except KeyError:
            raise TrainingError(
                f"training_step updated optimizer '{optimizer}'; configure_optimizers named "
                f"{', '.join(self.optimizers)}"
            ) from None
        parameters = [p for group in chosen.param_groups for p in group["params"] if p.requires_grad]
        chosen.zero_grad(set_to_none=True)
        device = loss.device.type
        with torch.autocast(device, enabled=False):  # backward never runs under autocast
            self._scaler.scale(loss).backward()
        if self._average:
            distributed.average_gradients(parameters)
        self._scaler.unscale_(chosen)  # the rules see the true gradients
        if not self._rules.apply(parameters):
            self.skipped += 1
            return False
        self._scaler.step(chosen)
        self.losses.append(loss.detach().float())
        return True
