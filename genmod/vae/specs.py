"""What the VAE family's components are built with: their context, the family's four kinds,
and the helpers a VAE's ``build`` uses to make the parts its config names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from genmod.vae.components import Decoder, Encoder, Likelihood, Prior

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import nn

    from genmod.config import ComponentRef
    from genmod.vae.config import LatentConfig


@dataclass(frozen=True, kw_only=True)
class ComponentContext:
    """What a component's ``build`` may need besides its own options."""

    data_shape: tuple[int, ...]
    latent_dim: int
    encoder: nn.Module | None = None
    """The model's map from images to q(z|x) (a :class:`~genmod.Encoder`, or any module that
    returns the posterior), for priors defined through it (e.g. the VampPrior)."""
    params_shape: tuple[int, ...] = ()
    """What a decoder emits per example: its model's likelihood's
    :meth:`~genmod.Likelihood.params_shape` (the data shape when not given)."""

    def __post_init__(self) -> None:
        if not self.params_shape:
            object.__setattr__(self, "params_shape", self.data_shape)


class _Building(Protocol):
    """What of a :class:`~genmod.ModelContext` the helpers use (read-only, as its fields are)."""

    @property
    def data_shape(self) -> tuple[int, ...]: ...

    @property
    def build_component(self) -> Callable[[str, ComponentRef, Any], nn.Module]: ...

    def component(self, kind: str, ref: ComponentRef, *args: Any, **kwargs: Any) -> nn.Module: ...


def component_context(
    model: _Building, latent_dim: int, encoder: nn.Module | None = None
) -> ComponentContext:
    """The context of an encoder, decoder, prior or likelihood built through
    ``ModelContext.component(kind, ref, latent_dim, encoder=None)``."""
    return ComponentContext(data_shape=model.data_shape, latent_dim=latent_dim, encoder=encoder)


class VAEHelpers:
    """The parts a :class:`~genmod.LatentConfig` (or :class:`~genmod.VAEConfig`) names, built
    through the registry: methods of every :class:`~genmod.ModelContext`, as in plugin API 0.2.
    A prior defined through the model (the VampPrior) is given ``encoder``: any module that
    maps images to q(z|x)."""

    def prior(self: _Building, config: LatentConfig, encoder: nn.Module | None = None) -> Prior:
        """The prior named by ``config.prior``."""
        built = self.component("prior", config.prior, config.latent_dim, encoder)
        assert isinstance(built, Prior)  # the registry checked it against the kind's base
        return built

    def likelihood(self: _Building, config: LatentConfig) -> Likelihood:
        """The likelihood named by ``config.likelihood``."""
        built = self.component("likelihood", config.likelihood, config.latent_dim)
        assert isinstance(built, Likelihood)
        return built

    def decoder(self: _Building, ref: ComponentRef, latent_dim: int, likelihood: Likelihood) -> Decoder:
        """The decoder ``ref`` names, emitting the parameters ``likelihood`` reads."""
        context = ComponentContext(
            data_shape=self.data_shape,
            latent_dim=latent_dim,
            params_shape=likelihood.params_shape(self.data_shape),
        )
        built = self.build_component("decoder", ref, context)
        assert isinstance(built, Decoder)
        return built


KINDS = (
    ("encoder", "encoders", Encoder, "q(z|x): images to a distribution over latents"),
    ("decoder", "decoders", Decoder, "latents to the parameters of p(x|z)"),
    ("prior", "priors", Prior, "p(z)"),
    ("likelihood", "likelihoods", Likelihood, "p(x|z) from decoder output"),
)
"""The VAE family's four kinds: name, plural, interface, description."""
