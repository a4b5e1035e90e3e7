"""The config schema: what a run's YAML may contain, validated by pydantic.

A run config has three sections. ``model`` is validated by the chosen model's own config
class (a :class:`ModelConfig` subclass registered by its plugin); ``data`` and ``train`` are
genmod's. Unknown keys are errors everywhere, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    SerializeAsAny,
    model_serializer,
    model_validator,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ComponentRef(BaseModel):
    """A registered component chosen by name, with its options.

    Written either as a bare name (``prior: standard-normal``) or as a mapping with the name
    and the component's options (``prior: {name: mixture, components: 10}``).
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_serializer
    def _to_yaml(self) -> str | dict[str, Any]:
        return {"name": self.name, **self.options} if self.options else self.name


class ModelConfig(_Strict):
    """Base class of every model's config section; ``name`` selects the registered model."""

    name: str


class VAEConfig(ModelConfig):
    """Config of a VAE whose prior and likelihood are chosen by name."""

    latent_dim: int = Field(20, ge=1, description="Size of the latent vector z.")
    prior: ComponentRef = Field(
        ComponentRef(name="standard-normal"), description="Registered prior p(z), by name."
    )
    likelihood: ComponentRef = Field(
        ComponentRef(name="bernoulli"), description="Registered likelihood p(x|z), by name."
    )
    beta: float = Field(1.0, gt=0, description="Weight of the KL term in the training loss.")


class DataConfig(_Strict):
    name: str = Field("mnist", description="Registered dataset.")
    root: Path | None = Field(
        None,
        description="Folder holding the dataset; default $GENMOD_DATA_DIR, else a user cache "
        "folder the dataset is downloaded into.",
    )
    limit: int | None = Field(None, ge=1, description="Train on the first N images only.")
    binarize: Literal["none", "dynamic", "static"] = Field(
        "none",
        description="none: grey levels as they are; dynamic: a fresh Bernoulli draw of each training "
        "image every time it is used; static: every image drawn once. The test set is binarized "
        "once with a fixed seed in both cases, so NLLs compare across runs.",
    )


class TrainConfig(_Strict):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(100, ge=1)
    lr: float = Field(1e-3, gt=0, description="Adam learning rate.")
    lr_step_size: int | None = Field(
        None, ge=1, description="Multiply the learning rate by lr_gamma every this many epochs."
    )
    lr_gamma: float = Field(0.1, gt=0, le=1)
    seed: int = 0
    device: str = Field("auto", description="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")
    eval_batch_size: int = Field(1000, ge=1)
    sample_epochs: list[NonNegativeInt] = Field(
        [0, 10, 20, 30],
        description="Epochs after which a sample grid is saved (0 = before training); the last epoch always is.",
    )
    samples: int = Field(64, ge=1, description="Images per sample grid.")
    logger: Literal["none", "tensorboard"] = Field(
        "none", description="Also log per-epoch metrics to TensorBoard (metrics.jsonl is always written)."
    )


class RunConfig(_Strict):
    """A whole run: ``model`` is the registered model's own config class."""

    model: SerializeAsAny[ModelConfig]
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
