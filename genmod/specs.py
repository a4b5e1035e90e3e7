"""What plugins register: models, components and datasets, and the context they are built in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from genmod.components import Encoder
from genmod.config import ComponentRef, ModelConfig, VAEConfig

if TYPE_CHECKING:
    from genmod.components import Likelihood, Prior
    from genmod.registry import Registry
    from genmod.vae import VAE

ComponentKind = Literal["encoder", "decoder", "prior", "likelihood"]


class NoOptions(BaseModel):
    """The options of a component that takes none."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ComponentContext:
    """What a component factory may need besides its own options."""

    data_shape: tuple[int, ...]
    latent_dim: int
    encoder: Encoder | None = None
    """The model's encoder, for priors defined through it (e.g. VampPrior)."""


@dataclass(frozen=True)
class ComponentSpec:
    """A named encoder, decoder, prior or likelihood.

    ``factory(options, context)`` builds the module; ``options`` is an instance of
    ``config``, validated from the mapping form of a :class:`ComponentRef`.
    """

    name: str
    factory: Callable[[Any, ComponentContext], nn.Module]
    config: type[BaseModel] = NoOptions
    description: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """A named model: its config class, a builder, and the recipe ``genmod run NAME`` uses.

    ``build(config, context)`` returns the model; ``default_config`` is a path to a YAML run
    config shipped with the plugin (or ``None`` to use the config classes' defaults).
    """

    name: str
    config: type[ModelConfig]
    build: Callable[[Any, BuildContext], VAE]
    default_config: Path | None = None
    description: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """A named image dataset.

    ``load(root, split, download)`` returns all images of ``split`` ("train" or "test") as
    one float tensor of shape ``(N, C, H, W)`` with values in [0, 1]. It raises
    ``FileNotFoundError`` when ``root`` does not hold the dataset and ``ValueError`` when its
    files break the contract; ``expects`` says what ``root`` must be, for error messages.
    """

    name: str
    load: Callable[[Path, str, bool], torch.Tensor]
    expects: str = "the folder holding the dataset"
    description: str = ""


@dataclass
class BuildContext:
    """Handed to a model builder: the data's shape and access to registered components."""

    data_shape: tuple[int, ...]
    registry: Registry = field(repr=False)

    def component(
        self, kind: ComponentKind, ref: ComponentRef, latent_dim: int, encoder: Encoder | None = None
    ) -> nn.Module:
        """Build the registered component ``ref`` of ``kind``."""
        return self.registry.build_component(
            kind, ref, ComponentContext(self.data_shape, latent_dim, encoder)
        )

    def prior(self, config: VAEConfig, encoder: Encoder) -> Prior:
        """The prior named by ``config.prior``."""
        return self.component("prior", config.prior, config.latent_dim, encoder)  # type: ignore[return-value]

    def likelihood(self, config: VAEConfig) -> Likelihood:
        """The likelihood named by ``config.likelihood``."""
        return self.component("likelihood", config.likelihood, config.latent_dim)  # type: ignore[return-value]
