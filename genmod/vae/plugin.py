"""The VAE family's plugin: its four kinds of component, the standard normal prior and the
Bernoulli likelihood. Registered through the ``genmod`` entry-point group like a third
party's family, so that the VAE uses no mechanism another family could not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genmod.hookspecs import hookimpl
from genmod.specs import ComponentSpec, KindSpec
from genmod.vae.likelihoods import BernoulliLikelihood
from genmod.vae.priors import StandardNormalPrior
from genmod.vae.specs import KINDS, component_context


@hookimpl
def register_kinds(register: Callable[[Any], None]) -> None:
    for name, plural, base, description in KINDS:
        register(
            KindSpec(name=name, plural=plural, base=base, context=component_context, description=description)
        )


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
