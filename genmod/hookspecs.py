"""The hooks a genmod plugin implements.

A plugin is a module exposed through the ``genmod`` entry-point group (or passed with
``--plugin``) that marks functions with :data:`hookimpl`. Each hook receives a ``register``
callback and calls it once per thing it provides::

    from genmod import ModelSpec, hookimpl

    @hookimpl
    def register_models(register):
        register(ModelSpec(name="my-vae", config=MyConfig, build=build_my_vae))

pluggy calls every plugin's implementation of a hook in one call, so ``@hookimpl(tryfirst=True)``,
``trylast`` and hook wrappers work as pluggy documents. A function whose name is not one of the
hooks below, or whose parameters are not ``register``, makes its plugin fail to load, with a
"did you mean" suggestion: genmod never ignores a hook implementation silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from genmod.specs import ComponentSpec, DatasetSpec, LoggerSpec, ModelSpec

PROJECT = "genmod"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register models.

    :param register: call ``register(ModelSpec(...))`` once per model; its ``build`` returns a
        :class:`genmod.GenerativeModel` (of any family).
    """


@hookspec
def register_encoders(register: Callable[[ComponentSpec], None]) -> None:
    """Register encoders.

    :param register: call ``register(ComponentSpec(...))`` once per encoder; its ``build``
        returns a :class:`genmod.Encoder`.
    """


@hookspec
def register_decoders(register: Callable[[ComponentSpec], None]) -> None:
    """Register decoders.

    :param register: call ``register(ComponentSpec(...))`` once per decoder; its ``build``
        returns a :class:`genmod.Decoder`.
    """


@hookspec
def register_priors(register: Callable[[ComponentSpec], None]) -> None:
    """Register priors.

    :param register: call ``register(ComponentSpec(...))`` once per prior; its ``build``
        returns a :class:`genmod.Prior`.
    """


@hookspec
def register_likelihoods(register: Callable[[ComponentSpec], None]) -> None:
    """Register likelihoods.

    :param register: call ``register(ComponentSpec(...))`` once per likelihood; its ``build``
        returns a :class:`genmod.Likelihood`.
    """


@hookspec
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register datasets.

    :param register: call ``register(DatasetSpec(...))`` once per dataset; its ``build``
        returns a split's images as one ``(N, C, H, W)`` float tensor in [0, 1].
    """


@hookspec
def register_loggers(register: Callable[[LoggerSpec], None]) -> None:
    """Register experiment trackers.

    :param register: call ``register(LoggerSpec(...))`` once per tracker; its ``build``
        returns a :class:`genmod.Logger`.
    """
