"""The optimizer and the learning-rate schedule a run's ``train`` section asks for."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any, Protocol

import torch
from torch.optim import lr_scheduler

from genmod.config import TrainConfig

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adamax": torch.optim.Adamax,
}


class OptimizerFactory(Protocol):
    """What :meth:`~genmod.GenerativeModel.configure_optimizers` is given: ``train.optimizer``
    over ``parameters``, with ``train``'s settings unless overridden here."""

    def __call__(
        self,
        parameters: Iterable[torch.nn.Parameter],
        *,
        lr: float | None = None,
        betas: tuple[float, float] | None = None,
        weight_decay: float | None = None,
    ) -> torch.optim.Optimizer: ...


def optimizer_factory(train: TrainConfig) -> OptimizerFactory:
    """The :class:`OptimizerFactory` of ``train``."""

    def optimizer(
        parameters: Iterable[torch.nn.Parameter],
        *,
        lr: float | None = None,
        betas: tuple[float, float] | None = None,
        weight_decay: float | None = None,
    ) -> torch.optim.Optimizer:
        overrides = {"lr": lr, "betas": betas, "weight_decay": weight_decay}
        return make_optimizer(parameters, train, **{k: v for k, v in overrides.items() if v is not None})

    return optimizer


def make_optimizer(
    parameters: Iterable[torch.nn.Parameter], train: TrainConfig, **overrides: Any
) -> torch.optim.Optimizer:
    """The configured optimizer, with its fused kernel where the device has one (a single pass
    over all parameters per step: faster per epoch on the reference model on CPU, see
    benchmarks/README.md);
    ``overrides`` replace ``train``'s lr, betas or weight_decay."""
    parameters = list(parameters)
    cls = OPTIMIZERS[train.optimizer]
    options: dict[str, Any] = {
        "lr": train.lr,
        "betas": train.betas,
        "weight_decay": train.weight_decay,
        **overrides,
    }
    try:
        # Every class in OPTIMIZERS takes fused=; torch's Optimizer base does not declare it.
        return cls(parameters, **options, fused=True)  # type: ignore[call-arg]
    except (RuntimeError, TypeError):  # no fused kernel for this optimizer or device
        return cls(parameters, **options)


class Schedule:
    """The learning-rate schedule, stepped once per epoch: an optional linear warm-up, then the
    configured torch scheduler. Its state is checkpointed, so resume is exact."""

    def __init__(self, optimizer: torch.optim.Optimizer, train: TrainConfig) -> None:
        self.warmup_epochs = train.lr_warmup_epochs
        self.epochs = 0
        self.warmup = (
            lr_scheduler.LinearLR(
                optimizer, 1 / (train.lr_warmup_epochs + 1), total_iters=train.lr_warmup_epochs
            )
            if train.lr_warmup_epochs
            else None
        )
        after = max(1, train.epochs - train.lr_warmup_epochs)
        self.main: Any = {
            "constant": lambda: None,
            "step": lambda: lr_scheduler.StepLR(optimizer, train.lr_step_size or 1, train.lr_gamma),
            "exponential": lambda: lr_scheduler.ExponentialLR(optimizer, train.lr_gamma),
            "cosine": lambda: lr_scheduler.CosineAnnealingLR(optimizer, after, eta_min=train.lr_min),
            "plateau": lambda: lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode=train.monitor_mode,
                factor=train.lr_gamma,
                patience=train.lr_patience,
                min_lr=train.lr_min,
            ),
        }[train.schedule]()

    def step(self, monitored: float | None) -> None:
        """After an epoch; ``monitored`` (``train.monitor``'s value, ``None`` on epochs without
        an evaluation) feeds the plateau schedule."""
        self.epochs += 1
        with warnings.catch_warnings():
            # torch warns when no optimizer step came first; an epoch whose every update was
            # skipped (train.skip_updates_above) still counts for an epoch-wise schedule.
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step")
            if self.warmup is not None and self.epochs <= self.warmup_epochs:
                self.warmup.step()
            elif isinstance(self.main, lr_scheduler.ReduceLROnPlateau):
                if monitored is not None:
                    self.main.step(monitored)
            elif self.main is not None:
                self.main.step()

    def state_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "warmup": self.warmup.state_dict() if self.warmup else None,
            "main": self.main.state_dict() if self.main else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs = state["epochs"]
        if self.warmup is not None:
            self.warmup.load_state_dict(state["warmup"])
        if self.main is not None:
            self.main.load_state_dict(state["main"])
