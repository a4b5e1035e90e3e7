"""The one table of what plugins can register.

Each kind names its hook, the spec type ``register`` accepts, the class what it builds must
subclass, and a description. The registry, the checks on what hooks register,
``genmod list --kind``, ``genmod plugins`` and the probe all read this table, so a new kind is
one hookspec and one row here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from genmod import hookspecs
from genmod.components import Decoder, Encoder, Likelihood, Prior
from genmod.loggers import Logger
from genmod.model import GenerativeModel
from genmod.specs import ComponentSpec, DatasetSpec, LoggerSpec, ModelSpec

KindName = Literal["model", "encoder", "decoder", "prior", "likelihood", "dataset", "logger"]


@dataclass(frozen=True, kw_only=True)
class Kind:
    name: KindName
    plural: str
    hook: str
    spec: type
    base: type | None
    """What the spec's ``build`` must return (``None``: a tensor, for datasets)."""
    description: str

    @property
    def is_component(self) -> bool:
        return self.spec is ComponentSpec


KINDS: tuple[Kind, ...] = (
    Kind(
        name="model",
        plural="models",
        hook=hookspecs.register_models.__name__,
        spec=ModelSpec,
        base=GenerativeModel,
        description="a whole model with its config class and recipe",
    ),
    Kind(
        name="encoder",
        plural="encoders",
        hook=hookspecs.register_encoders.__name__,
        spec=ComponentSpec,
        base=Encoder,
        description="q(z|x): images to a distribution over latents",
    ),
    Kind(
        name="decoder",
        plural="decoders",
        hook=hookspecs.register_decoders.__name__,
        spec=ComponentSpec,
        base=Decoder,
        description="latents to the parameters of p(x|z)",
    ),
    Kind(
        name="prior",
        plural="priors",
        hook=hookspecs.register_priors.__name__,
        spec=ComponentSpec,
        base=Prior,
        description="p(z)",
    ),
    Kind(
        name="likelihood",
        plural="likelihoods",
        hook=hookspecs.register_likelihoods.__name__,
        spec=ComponentSpec,
        base=Likelihood,
        description="p(x|z) from decoder output",
    ),
    Kind(
        name="dataset",
        plural="datasets",
        hook=hookspecs.register_datasets.__name__,
        spec=DatasetSpec,
        base=None,
        description="images from disk, as tensors (or streamed from shards)",
    ),
    Kind(
        name="logger",
        plural="loggers",
        hook=hookspecs.register_loggers.__name__,
        spec=LoggerSpec,
        base=Logger,
        description="an experiment tracker a run reports to",
    ),
)

BY_NAME: dict[str, Kind] = {kind.name: kind for kind in KINDS}
BY_HOOK: dict[str, Kind] = {kind.hook: kind for kind in KINDS}
COMPONENT_KINDS: tuple[Kind, ...] = tuple(kind for kind in KINDS if kind.is_component)
