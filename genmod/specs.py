"""What plugins register (models, components, datasets, kinds) and the context each is built in.

Every spec is a frozen, keyword-only dataclass whose ``build`` callable makes the thing it
names: ``ComponentSpec(name="laplace", build=..., options=LaplaceOptions)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from genmod.errors import ConfigError
from genmod.vae.specs import VAEHelpers  # 0.2 model plugins call context.prior(...) and the like

if TYPE_CHECKING:
    import torch
    from torch import nn

    from genmod.config import ComponentRef, ModelConfig
    from genmod.evaluators import Evaluator
    from genmod.loggers import Logger
    from genmod.model import GenerativeModel
    from genmod.streaming import StreamingImages


class NoOptions(BaseModel):
    """The options of a component that takes none."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, kw_only=True)
class ComponentSpec:
    """A named component of a kind a model family declares (:class:`KindSpec`): a VAE's prior,
    a flow's coupling layer.

    ``build(options, context)`` returns the module; ``options`` is an instance of the pydantic
    class ``options``, validated from the mapping form of a :class:`~genmod.ComponentRef`, and
    ``context`` is what the kind's family makes for it (a VAE's
    :class:`~genmod.ComponentContext`).
    """

    name: str
    build: Callable[[Any, Any], nn.Module]
    options: type[BaseModel] = NoOptions
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A named model: its config class, its ``build``, and the recipe ``genmod run NAME`` uses.

    ``build(config, context)`` returns the model. ``recipe`` is the path of a YAML run config
    shipped with the plugin; without one, ``genmod run NAME`` starts from the config classes'
    defaults.
    """

    name: str
    config: type[ModelConfig]
    build: Callable[[Any, ModelContext], GenerativeModel]
    recipe: Path | None = None
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """A named image dataset.

    ``build(root, split, download)`` returns all images of ``split`` ("train" or "test") as
    one tensor of shape ``(N, C, H, W)``: ``uint8`` (0-255) where the source is 8-bit, which
    genmod keeps in memory as it is and scales per batch, or float with values in [0, 1]; for a
    training split larger than memory, a :class:`genmod.streaming.StreamingImages`. It raises
    ``FileNotFoundError`` when ``root`` does not hold the dataset and ``ValueError`` when its
    files break the contract; ``expects`` says what ``root`` must be, for error messages.
    """

    name: str
    build: Callable[[Path, str, bool], torch.Tensor | StreamingImages]
    expects: str = "the folder holding the dataset"
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class LoggerSpec:
    """A named experiment tracker.

    ``build(options)`` returns a :class:`genmod.Logger`; ``options`` is an instance of the
    pydantic class ``options``, validated from the mapping form of the name in
    ``train.loggers`` (``{name: mlflow, experiment: vae-sweep}``).
    """

    name: str
    build: Callable[[Any], Logger]
    options: type[BaseModel] = NoOptions
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class EvaluatorSpec:
    """A named sample-quality metric (``genmod eval --metric NAME``).

    ``build(options)`` returns a :class:`genmod.Evaluator`; ``options`` is an instance of the
    pydantic class ``options``.
    """

    name: str
    build: Callable[[Any], Evaluator]
    options: type[BaseModel] = NoOptions
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class KindSpec:
    """A kind of swappable component a model family is composed of, registered by the family's
    plugin (``register_kinds``): plugins then register components of it through the hook
    ``register_{plural}``, and they appear in ``genmod list``, ``info``, ``plugins`` and
    ``--set model.NAME=...`` like every kind.

    ``context(model_context, *args, **kwargs)`` makes what a component's ``build`` receives from
    :meth:`ModelContext.component`'s extra arguments (the VAE family's take ``latent_dim``).
    """

    name: str
    plural: str
    base: type
    """What every component of the kind must subclass."""
    context: Callable[..., Any]
    description: str = ""

    @property
    def hook(self) -> str:
        return f"register_{self.plural}"


BuildComponent = Callable[[str, "ComponentRef", Any], "nn.Module"]


@dataclass(frozen=True, kw_only=True)
class ModelContext(VAEHelpers):
    """Handed to a model's ``build``: the data's shape and levels, and the registered
    components by name."""

    data_shape: tuple[int, ...]
    build_component: BuildComponent = field(repr=False)
    """``build_component(kind, ref, context)``: the registered component ``ref`` names, checked
    against its kind's interface."""
    levels: int | None = None
    """The values each pixel takes as training feeds it: 2 for binarized images
    (``data.binarize``), 256 for 8-bit ones, ``None`` for continuous ones or when unknown
    (a model rebuilt from an exported file)."""
    kinds: Mapping[str, KindSpec] = field(default_factory=dict, repr=False)
    """The component kinds the families declared, by name (the registry's)."""

    def component(self, kind: str, ref: ComponentRef, *args: Any, **kwargs: Any) -> nn.Module:
        """Build the registered component ``ref`` of ``kind``, in the context its family makes
        from ``args`` and ``kwargs`` (:attr:`KindSpec.context`)."""
        try:
            declared = self.kinds[kind]
        except KeyError:
            raise ConfigError(
                f"unknown component kind '{kind}': use one of {', '.join(self.kinds)}"
            ) from None
        return self.build_component(kind, ref, declared.context(self, *args, **kwargs))


def __getattr__(name: str) -> Any:
    # genmod.specs.ComponentContext, the import path of plugin API 0.2: it is the VAE family's.
    if name == "ComponentContext":
        from genmod.vae.specs import ComponentContext

        return ComponentContext
    raise AttributeError(f"module 'genmod.specs' has no attribute '{name}'")
