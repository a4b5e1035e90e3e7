"""The one table of what plugins can register, and the rows model families add to it.

Each kind names its hook, the spec type ``register`` accepts, the class what it builds must
subclass, and a description. genmod's own kinds are the rows below; a family declares the
kinds of component its models are composed of with ``register_kinds`` (the VAE family its
encoder, decoder, prior and likelihood), and each becomes a row like these. The registry, the
checks on what hooks register, ``genmod list --kind``, ``genmod plugins``, ``--set`` and the
probe all read the rows, so a new kind is one row here or one ``KindSpec`` in a family.
"""

from __future__ import annotations

from dataclasses import dataclass

from genmod import hookspecs
from genmod.evaluators import Evaluator
from genmod.loggers import Logger
from genmod.model import GenerativeModel
from genmod.specs import ComponentSpec, DatasetSpec, EvaluatorSpec, KindSpec, LoggerSpec, ModelSpec


@dataclass(frozen=True, kw_only=True)
class Kind:
    name: str
    plural: str
    hook: str
    spec: type
    base: type | None
    """What the spec's ``build`` must return (``None``: a tensor, for datasets)."""
    description: str
    takes_context: bool = True
    """Whether the spec's ``build`` takes ``(options, context)``, or ``(options)`` alone."""
    declared: KindSpec | None = None
    """For a component kind, the family's declaration."""

    @property
    def is_component(self) -> bool:
        return self.declared is not None

    @classmethod
    def of_component(cls, declared: KindSpec) -> Kind:
        """The row of a component kind a family declared."""
        return cls(
            name=declared.name,
            plural=declared.plural,
            hook=declared.hook,
            spec=ComponentSpec,
            base=declared.base,
            description=declared.description,
            declared=declared,
        )


MODEL = Kind(
    name="model",
    plural="models",
    hook=hookspecs.register_models.__name__,
    spec=ModelSpec,
    base=GenerativeModel,
    description="a whole model with its config class and recipe",
)
KIND = Kind(
    name="kind",
    plural="kinds",
    hook=hookspecs.register_kinds.__name__,
    spec=KindSpec,
    base=None,
    description="a kind of component a model family is composed of",
)
AFTER_COMPONENTS = (
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
        takes_context=False,
    ),
    Kind(
        name="evaluator",
        plural="evaluators",
        hook=hookspecs.register_evaluators.__name__,
        spec=EvaluatorSpec,
        base=Evaluator,
        description="a sample-quality metric (genmod eval --metric)",
        takes_context=False,
    ),
)
"""Listed after the families' component kinds, which come after models."""
