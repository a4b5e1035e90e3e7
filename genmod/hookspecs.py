"""The hooks a genmod plugin implements.

A plugin is a module exposed through the ``genmod`` entry-point group (or passed with
``--plugin``) that marks functions with :data:`hookimpl`. Each hook receives a ``register``
callback and calls it once per thing it provides::

    from genmod import ModelSpec, hookimpl

    @hookimpl
    def register_models(register):
        register(ModelSpec(name="my-vae", config=MyConfig, build=build_my_vae))
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from genmod.specs import ComponentSpec, DatasetSpec, ModelSpec

PROJECT = "genmod"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register models with ``register(ModelSpec(...))``."""


@hookspec
def register_encoders(register: Callable[[ComponentSpec], None]) -> None:
    """Register encoders (factories returning a :class:`genmod.Encoder`)."""


@hookspec
def register_decoders(register: Callable[[ComponentSpec], None]) -> None:
    """Register decoders (factories returning a :class:`genmod.Decoder`)."""


@hookspec
def register_priors(register: Callable[[ComponentSpec], None]) -> None:
    """Register priors (factories returning a :class:`genmod.Prior`)."""


@hookspec
def register_likelihoods(register: Callable[[ComponentSpec], None]) -> None:
    """Register likelihoods (factories returning a :class:`genmod.Likelihood`)."""


@hookspec
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register datasets with ``register(DatasetSpec(...))``."""
