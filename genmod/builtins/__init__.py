"""genmod's built-in plugin: the standard normal prior, the Bernoulli likelihood, the
torchvision datasets and the experiment trackers. It is registered through the ``genmod`` entry-point group like any
third-party plugin, so it can be listed, replaced or left out in the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genmod.builtins.datasets import DATASETS
from genmod.builtins.likelihoods import BernoulliLikelihood
from genmod.builtins.loggers import LOGGERS
from genmod.builtins.priors import StandardNormalPrior
from genmod.hookspecs import hookimpl
from genmod.specs import ComponentSpec


@hookimpl
def register_priors(register: Callable[[Any], None]) -> None:
    register(
        ComponentSpec(
            name="standard-normal",
            build=lambda options, context: StandardNormalPrior(context.latent_dim),
            description="N(0, I); analytic KL against a diagonal Gaussian posterior.",
        )
    )


@hookimpl
def register_likelihoods(register: Callable[[Any], None]) -> None:
    register(
        ComponentSpec(
            name="bernoulli",
            build=lambda options, context: BernoulliLikelihood(len(context.data_shape)),
            description="Independent Bernoulli per pixel on decoder logits (BCE with logits).",
        )
    )


@hookimpl
def register_datasets(register: Callable[[Any], None]) -> None:
    for spec in DATASETS:
        register(spec)


@hookimpl
def register_loggers(register: Callable[[Any], None]) -> None:
    for spec in LOGGERS:
        register(spec)
