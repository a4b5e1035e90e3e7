"""What plugins register (models, components, datasets) and the context each is built in.

Every spec is a frozen, keyword-only dataclass whose ``build`` callable makes the thing it
names: ``ComponentSpec(name="laplace", build=..., options=LaplaceOptions)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import torch
    from torch import nn

    from genmod.components import Decoder, Encoder, Likelihood, Prior
    from genmod.config import ComponentRef, ModelConfig, VAEConfig
    from genmod.loggers import Logger
    from genmod.model import GenerativeModel
    from genmod.streaming import StreamingImages

ComponentKind = Literal["encoder", "decoder", "prior", "likelihood"]


class NoOptions(BaseModel):
    """The options of a component that takes none."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, kw_only=True)
class ComponentContext:
    """What a component's ``build`` may need besides its own options."""

    data_shape: tuple[int, ...]
    latent_dim: int
    encoder: Encoder | None = None
    """The model's encoder, for priors defined through it (e.g. the VampPrior)."""
    params_shape: tuple[int, ...] = ()
    """What a decoder emits per example: its model's likelihood's
    :meth:`~genmod.Likelihood.params_shape` (the data shape when not given)."""

    def __post_init__(self) -> None:
        if not self.params_shape:
            object.__setattr__(self, "params_shape", self.data_shape)


@dataclass(frozen=True, kw_only=True)
class ComponentSpec:
    """A named encoder, decoder, prior or likelihood.

    ``build(options, context)`` returns the module; ``options`` is an instance of the pydantic
    class ``options``, validated from the mapping form of a :class:`~genmod.ComponentRef`.
    """

    name: str
    build: Callable[[Any, ComponentContext], nn.Module]
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


BuildComponent = Callable[["ComponentKind", "ComponentRef", ComponentContext], "nn.Module"]


@dataclass(frozen=True, kw_only=True)
class ModelContext:
    """Handed to a model's ``build``: the data's shape and levels, and the registered
    components by name."""

    data_shape: tuple[int, ...]
    build_component: BuildComponent = field(repr=False)
    """``build_component(kind, ref, context)``: the registered component ``ref`` names, checked
    against its interface."""
    levels: int | None = None
    """The values each pixel takes as training feeds it: 2 for binarized images
    (``data.binarize``), 256 for 8-bit ones, ``None`` for continuous ones or when unknown
    (a model rebuilt from an exported file)."""

    def component(
        self, kind: ComponentKind, ref: ComponentRef, latent_dim: int, encoder: Encoder | None = None
    ) -> nn.Module:
        """Build the registered component ``ref`` of ``kind``."""
        context = ComponentContext(data_shape=self.data_shape, latent_dim=latent_dim, encoder=encoder)
        return self.build_component(kind, ref, context)

    def prior(self, config: VAEConfig, encoder: Encoder) -> Prior:
        """The prior named by ``config.prior``."""
        return self.component("prior", config.prior, config.latent_dim, encoder)  # type: ignore[return-value]

    def likelihood(self, config: VAEConfig) -> Likelihood:
        """The likelihood named by ``config.likelihood``."""
        return self.component("likelihood", config.likelihood, config.latent_dim)  # type: ignore[return-value]

    def decoder(self, ref: ComponentRef, latent_dim: int, likelihood: Likelihood) -> Decoder:
        """The decoder ``ref`` names, emitting the parameters ``likelihood`` reads."""
        context = ComponentContext(
            data_shape=self.data_shape,
            latent_dim=latent_dim,
            params_shape=likelihood.params_shape(self.data_shape),
        )
        return self.build_component("decoder", ref, context)  # type: ignore[return-value]
