"""genmod's built-in plugin: the torchvision datasets, the experiment trackers and the
sample-quality evaluators. It is
registered through the ``genmod`` entry-point group like any third-party plugin, so it can be
listed, replaced or left out in the same way (the VAE family's built-in prior and likelihood
are in its own plugin, :mod:`genmod.vae.plugin`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genmod.builtins.datasets import DATASETS
from genmod.builtins.evaluators import EVALUATORS
from genmod.builtins.loggers import LOGGERS
from genmod.hookspecs import hookimpl


@hookimpl
def register_datasets(register: Callable[[Any], None]) -> None:
    for spec in DATASETS:
        register(spec)


@hookimpl
def register_loggers(register: Callable[[Any], None]) -> None:
    for spec in LOGGERS:
        register(spec)


@hookimpl
def register_evaluators(register: Callable[[Any], None]) -> None:
    for spec in EVALUATORS:
        register(spec)
