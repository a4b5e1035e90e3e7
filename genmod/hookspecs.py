"""The hooks a genmod plugin implements.

A plugin is a module exposed through the ``genmod`` entry-point group (or passed with
``--plugin``) that marks functions with :data:`hookimpl`. Each hook receives a ``register``
callback and calls it once per thing it provides::

    from genmod import ModelSpec, hookimpl

    @hookimpl
    def register_models(register):
        register(ModelSpec(name="my-vae", config=MyConfig, build=build_my_vae))

pluggy calls every plugin's implementation of a hook in one call, so ``@hookimpl(tryfirst=True)``,
``trylast`` and hook wrappers work as pluggy documents. Besides the hooks below, each kind of
component a model family declares (``register_kinds``) has its hook, ``register_{plural}``:
the VAE family's ``register_encoders``, ``register_decoders``, ``register_priors`` and
``register_likelihoods``. A function whose name is not a hook, or whose parameters are not
``register``, makes its plugin fail to load, with a "did you mean" suggestion: genmod never
ignores a hook implementation silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from genmod.specs import ComponentSpec, DatasetSpec, EvaluatorSpec, KindSpec, LoggerSpec, ModelSpec

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
def register_kinds(register: Callable[[KindSpec], None]) -> None:
    """Register the kinds of swappable component a model family is composed of.

    :param register: call ``register(KindSpec(...))`` once per kind. Plugins then register
        components of it through the hook ``register_{plural}`` (``register_priors`` for the
        VAE family's priors), which takes ``register`` like the others; its
        ``ComponentSpec``'s ``build`` returns a ``KindSpec.base``.
    """


def component_hookspec(declared: KindSpec) -> type:
    """The hookspec of a declared kind's hook, for ``PluginManager.add_hookspecs``."""

    def register_components(register: Callable[[ComponentSpec], None]) -> None:
        pass

    register_components.__name__ = register_components.__qualname__ = declared.hook
    register_components.__doc__ = (
        f"Register {declared.plural} ({declared.description}).\n\n"
        f":param register: call ``register(ComponentSpec(...))`` once per {declared.name}; its "
        f"``build`` returns a {declared.base.__module__}.{declared.base.__name__}."
    )
    return type(f"{declared.name}_hooks", (), {declared.hook: staticmethod(hookspec(register_components))})


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


@hookspec
def register_evaluators(register: Callable[[EvaluatorSpec], None]) -> None:
    """Register sample-quality metrics (``genmod eval --metric NAME``).

    :param register: call ``register(EvaluatorSpec(...))`` once per metric; its ``build``
        returns a :class:`genmod.Evaluator`, which compares features of generated and real
        images.
    """
