"""The config schema: what a run's YAML may contain, validated by pydantic.

A run config has three sections. ``model`` is validated by the chosen model's own config
class (a :class:`ModelConfig` subclass registered by its plugin); ``data`` and ``train`` are
genmod's. Unknown keys are errors everywhere, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    SerializeAsAny,
    field_validator,
    model_serializer,
    model_validator,
)

MAX_K = 1_000_000
"""The most importance samples per image: far past where the IS-NLL stops moving (k = 5000 is
the literature's), and a bound on a mistyped k's run time and memory."""
MAX_GRID = 4096
"""The most images in one sample grid (64 by 64)."""
EVAL_BATCH_SIZE = 1000
"""Images per evaluation batch unless the run config says otherwise (``train.eval_batch_size``)."""

Precision = Literal["auto", "fp32", "bf16", "fp16"]
Compile = bool | Literal["auto"]
MemoryFormat = Literal["auto", "contiguous", "channels_last"]


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


class DataConfig(_Strict):
    name: str = Field("mnist", description="Registered dataset.")
    root: Path | None = Field(
        None,
        description="Folder holding the dataset; default $GENMOD_DATA_DIR, else a user cache "
        "folder the dataset is downloaded into.",
    )
    limit: int | None = Field(None, ge=1, description="Train on the first N images only.")
    test_limit: int | None = Field(
        None,
        ge=1,
        description="Evaluate each epoch on the first N test images only (genmod eval always "
        "uses them all): for models whose evaluation is costly.",
    )
    validation: NonNegativeInt = Field(
        0,
        description="Hold out this many training images (a fixed random choice, the same in every "
        "run) as a validation set: reported every epoch, and what early stopping and the plateau "
        "schedule watch. The literature's MNIST recipes use 10000.",
    )
    binarize: Literal["none", "dynamic", "static"] = Field(
        "none",
        description="none: grey levels as they are; dynamic: a fresh Bernoulli draw of each training "
        "image every time it is used; static: every image drawn once. The test set is binarized "
        "once with a fixed seed in both cases, so NLLs compare across runs.",
    )
    workers: NonNegativeInt = Field(
        1,
        description="DataLoader worker processes decoding a streamed training set (data.name: "
        "streaming); 0 decodes in the training process.",
    )

    @field_validator("root")
    @classmethod
    def _absolute(cls, root: Path | None) -> Path | None:
        """Stored absolute: a run's config must mean the same folder from anywhere (a relative
        ``--data-dir ../data`` is taken from the folder the command runs in)."""
        return None if root is None else Path(os.path.abspath(root.expanduser()))


class SampleMetricsConfig(_Strict):
    """Sample-quality metrics computed during training (``train.sample_metrics``)."""

    metrics: list[ComponentRef] = Field(
        description="Registered evaluators (fid, kid, precision-recall), each a name or a mapping with its options."
    )
    every: int = Field(5, ge=1, description="Compute them every this many epochs (and after the last).")
    samples: int = Field(5000, ge=2, description="Samples drawn each time.")
    features: str = Field("auto", description="Feature network: auto, mnist, fashion-mnist, inception-v3.")
    features_weights: Path | None = Field(
        None,
        description="Its weights file (default: shipped, or in the features folder, $GENMOD_FEATURES_DIR).",
    )


class TrainConfig(_Strict):
    epochs: int = Field(30, ge=1, description="Epochs to train (early stopping may end sooner).")
    batch_size: int = Field(100, ge=1)
    optimizer: Literal["adam", "adamw", "adamax"] = Field(
        "adam", description="torch.optim's Adam, AdamW or Adamax."
    )
    lr: float = Field(1e-3, gt=0, description="Learning rate.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="The optimizer's moment decay rates.")
    weight_decay: float = Field(0.0, ge=0, description="Weight decay (decoupled for adamw).")
    schedule: Literal["constant", "step", "exponential", "cosine", "plateau"] = Field(
        "constant",
        description="Learning-rate schedule, stepped once per epoch: step (x lr_gamma every "
        "lr_step_size epochs; implied by lr_step_size alone), exponential (x lr_gamma every epoch), "
        "cosine (to lr_min at the last epoch), plateau (x lr_gamma after more than lr_patience "
        "evaluations without a better train.monitor; needs it reported).",
    )
    lr_step_size: int | None = Field(
        None, ge=1, description="Multiply the learning rate by lr_gamma every this many epochs."
    )
    lr_gamma: float = Field(
        0.1, gt=0, le=1, description="The factor of the step, exponential and plateau schedules."
    )
    lr_patience: NonNegativeInt = Field(
        10, description="Epochs without improvement before plateau lowers the rate."
    )
    lr_min: float = Field(0.0, ge=0, description="The lowest rate of the cosine and plateau schedules.")
    lr_warmup_epochs: NonNegativeInt = Field(
        0, description="Linear learning-rate warm-up from lr/(N+1) to lr over the first N epochs."
    )
    clip_grad_norm: float | None = Field(
        None, gt=0, description="Rescale gradients whose total norm exceeds this."
    )
    skip_updates_above: float | None = Field(
        None,
        gt=0,
        description="Skip (do not apply) an update whose gradient norm is above this or not finite; "
        "skipped updates are counted in metrics.jsonl.",
    )
    early_stopping: int | None = Field(
        None,
        ge=1,
        description="Stop when train.monitor has not improved for this many evaluations.",
    )
    monitor: str = Field(
        "validation/loss",
        description="The metric early stopping, the plateau schedule and best.pt follow, as the "
        "trackers name it (validation/loss: the model's bound on the validation set; "
        "validation/TERM, train/loss, ...); never a test metric. Without data.validation a "
        "validation metric is not reported, and nothing is followed.",
    )
    monitor_mode: Literal["min", "max"] = Field("min", description="Whether lower or higher is better.")
    eval_every: int = Field(
        1,
        ge=1,
        description="Evaluate the validation and test sets every this many epochs (and after the "
        "last): for models whose evaluation is costly.",
    )
    ema_decay: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Keep an exponential moving average of the weights with this decay (e.g. "
        "0.999), updated after every step and warmed up as min(decay, (1 + n) / (10 + n)) at "
        "the n-th; evaluation, samples and best.pt use it.",
    )
    sample_metrics: SampleMetricsConfig | None = Field(
        None,
        description="Sample-quality metrics logged during training against the validation split "
        "(validation/fid, ...; the test split without data.validation), which train.monitor can "
        "follow: e.g. {metrics: [fid], every: 5, samples: 5000}.",
    )
    checkpoint_every: int | None = Field(
        None,
        ge=1,
        description="Also checkpoint every this many steps within an epoch, so that a run killed "
        "mid-epoch (SIGKILL, a lost machine) resumes at that step, not at the epoch's start.",
    )
    seed: int = 0
    device: str = Field("auto", description="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")
    precision: Precision = Field(
        "auto",
        description="Arithmetic of the layers: bf16 (bfloat16 autocast, float32 weights, losses and "
        "sums), fp16 (the same in float16, with a gradient scaler: for GPUs without bfloat16), fp32, "
        "or auto: bf16 where the device computes it natively (CPUs with AVX-512 BF16 or AMX, recent "
        "GPUs), else fp32.",
    )
    compile: Compile = Field(
        "auto",
        description="torch.compile the model: true, false, or auto: true for runs of at least 5000 steps, "
        "where the seconds spent compiling pay for themselves.",
    )
    memory_format: MemoryFormat = Field(
        "auto",
        description="Layout of the convolution weights: contiguous (NCHW), channels_last (NHWC), or "
        "auto: channels_last where it was measured faster (convolutional models in float32 on the "
        "CPU), else contiguous.",
    )
    eval_batch_size: int = Field(
        EVAL_BATCH_SIZE,
        ge=1,
        description="Images per batch when the bound is evaluated: after each epoch, and by genmod eval of "
        "the run (divided there by the model's evaluation passes per image). Large batches of a "
        "convolutional model are slow on the CPU, where every batch's big temporaries come as fresh "
        "pages from the kernel: the zoo's PixelCNN recipe sets 50.",
    )
    sample_epochs: list[NonNegativeInt] = Field(
        [0, 10, 20, 30],
        description="Epochs after which a sample grid is saved (0 = before training); the last epoch always is.",
    )
    samples: int = Field(64, ge=1, le=MAX_GRID, description="Images per sample grid.")
    loggers: list[ComponentRef] = Field(
        [],
        description="Experiment trackers the run also reports to, by name (tensorboard, mlflow, "
        "wandb, or a plugin's), each a name or a mapping with its options; metrics.jsonl is "
        "always written.",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_logger(cls, values: Any) -> Any:
        """``loggers: mlflow`` means one; ``logger: NAME|none`` is 0.2's spelling of it."""
        if isinstance(values, dict):
            values = dict(values)
            if "logger" in values and "loggers" not in values:
                old = values.pop("logger")
                values["loggers"] = [] if old in (None, "none") else old
            if isinstance(values.get("loggers"), (str, dict)):
                values["loggers"] = [values["loggers"]]
        return values


class RunConfig(_Strict):
    """A whole run: ``model`` is the registered model's own config class."""

    model: SerializeAsAny[ModelConfig]
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    plugins: list[Path] = Field(
        [], description="Plugin files the run was trained with (--plugin); loaded again for it."
    )

    @model_validator(mode="after")
    def _schedule_needs(self) -> RunConfig:
        train = self.train
        if train.schedule == "constant" and train.lr_step_size is not None:
            # lr_step_size alone has always meant the step schedule.
            object.__setattr__(train, "schedule", "step")
        if train.schedule == "step" and train.lr_step_size is None:
            raise ValueError("train.schedule step needs train.lr_step_size")
        if train.monitor.startswith("test/"):
            raise ValueError(
                f"train.monitor {train.monitor}: the test set never chooses anything; monitor a "
                "validation metric (and set data.validation)"
            )
        needs_monitor = {
            "early stopping": train.early_stopping,
            "the plateau schedule": train.schedule == "plateau",
        }
        for what, used in needs_monitor.items():
            if used and train.monitor.startswith("validation/") and not self.data.validation:
                raise ValueError(f"{what} watches {train.monitor}: set data.validation (e.g. 10000)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def __getattr__(name: str) -> Any:
    # genmod.config.VAEConfig, the import path of plugin API 0.2: the class now lives with the
    # rest of the VAE family (genmod.vae); loaded on use, so that the core never imports it.
    if name == "VAEConfig":
        from genmod.vae.config import VAEConfig

        return VAEConfig
    raise AttributeError(f"module 'genmod.config' has no attribute '{name}'")
