"""Built-in experiment trackers: TensorBoard, MLflow and Weights & Biases.

Each imports its tracker's client when the run opens it, so that ``genmod list`` does not pay
for it, and says which extra to install when it is missing.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from genmod.errors import ConfigError
from genmod.loggers import Logger, Opened, RunInfo
from genmod.specs import LoggerSpec, NoOptions

if TYPE_CHECKING:
    from genmod.metrics import EpochRecord


def _missing(name: str, extra: str) -> ConfigError:
    return ConfigError(f'the {name} logger needs its client: pip install "genmod[{extra}]"')


class TensorBoardLogger(Logger):
    """Scalars per epoch, the config as text and the image grids, under ``RUN_DIR/tensorboard``."""

    def __init__(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard", "tensorboard") from None
        self._writer_class = SummaryWriter
        self._writer: Any = None

    def open(self, run: RunInfo) -> Opened:
        folder = run.run_dir / "tensorboard"
        self._writer = self._writer_class(log_dir=str(folder))
        if run.resume_id is None:
            self._writer.add_text("config", f"```\n{yaml.safe_dump(run.config, sort_keys=False)}```")
        return Opened(str(folder), f"TensorBoard events in {folder} (tensorboard --logdir {run.run_dir})")

    def log(self, record: EpochRecord) -> None:
        for name, value in record.scalars().items():
            self._writer.add_scalar(name, value, record.epoch)
        self._writer.flush()

    def log_images(self, paths: Sequence[Path], epoch: int) -> None:
        import numpy as np
        from PIL import Image

        for path in paths:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            self._writer.add_image(path.stem, pixels, epoch, dataformats="HWC")
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class MLflowOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tracking_uri: str | None = Field(
        None,
        description="Where runs are tracked; default $MLFLOW_TRACKING_URI, else MLflow's own "
        "default (sqlite:///mlflow.db in the current folder).",
    )
    experiment: str = Field("genmod", description="The MLflow experiment the runs go into.")


class MLflowLogger(Logger):
    """The config as parameters, per-epoch metrics with the epoch as step, the grids as artifacts;
    through :class:`mlflow.MlflowClient`, so nothing global is touched."""

    def __init__(self, options: MLflowOptions) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise _missing("mlflow", "mlflow") from None
        # MLflow announces its database migrations at INFO on first use; the run says where it logs.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.client = MlflowClient(options.tracking_uri)
        self.experiment = options.experiment
        self.run_id = ""

    def open(self, run: RunInfo) -> Opened:
        from mlflow.entities import Param

        if run.resume_id is not None:
            self.run_id = run.resume_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            found = self.client.get_experiment_by_name(self.experiment)
            experiment = found.experiment_id if found else self.client.create_experiment(self.experiment)
            self.run_id = self.client.create_run(experiment, run_name=run.name).info.run_id
            # MLflow parameters are write-once: logged when the run starts, never on resume.
            params = [Param(key, str(value)) for key, value in run.params.items()]
            for start in range(0, len(params), 100):  # log_batch takes at most 100 parameters
                self.client.log_batch(self.run_id, params=params[start : start + 100])
        uri = self.client.tracking_uri
        return Opened(self.run_id, f"MLflow run {self.run_id} in experiment '{self.experiment}' at {uri}")

    def log(self, record: EpochRecord) -> None:
        from mlflow.entities import Metric

        now = int(1000 * time.time())
        metrics = [Metric(name, value, now, record.epoch) for name, value in record.scalars().items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_images(self, paths: Sequence[Path], epoch: int) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path))

    def close(self) -> None:
        if self.run_id:
            self.client.set_terminated(self.run_id)


class WandbOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project: str = Field("genmod", description="The W&B project.")
    entity: str | None = Field(None, description="The W&B team or user; default your own.")
    mode: Literal["auto", "online", "offline"] = Field(
        "auto",
        description="auto: online when WANDB_API_KEY is set, else offline (files under "
        "RUN_DIR/wandb, uploaded later with 'wandb sync').",
    )


class WandbLogger(Logger):
    """The config, per-epoch metrics and the image grids, with the epoch as step."""

    def __init__(self, options: WandbOptions) -> None:
        try:
            import wandb
        except ImportError:
            raise _missing("wandb", "wandb") from None
        self.wandb = wandb
        self.options = options
        self.run: Any = None

    def open(self, run: RunInfo) -> Opened:
        mode = self.options.mode
        if mode == "auto":
            mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
        self.run = self.wandb.init(
            project=self.options.project,
            entity=self.options.entity,
            name=run.name,
            id=run.resume_id or secrets.token_hex(4),
            resume="allow",
            dir=str(run.run_dir),
            config=run.config,
            mode=mode,
            settings=self.wandb.Settings(silent=True, console="off"),
        )
        where = f"W&B run {self.run.id} ({mode})" + (
            f" in {run.run_dir / 'wandb'}; upload it with: wandb sync {run.run_dir / 'wandb'}"
            if mode == "offline"
            else f" at {self.run.url}"
        )
        return Opened(self.run.id, where)

    def log(self, record: EpochRecord) -> None:
        self.run.log(record.scalars(), step=record.epoch)

    def log_images(self, paths: Sequence[Path], epoch: int) -> None:
        self.run.log({path.stem: self.wandb.Image(str(path)) for path in paths}, step=epoch)

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()


LOGGERS = (
    LoggerSpec(
        name="tensorboard",
        build=lambda options: TensorBoardLogger(),
        options=NoOptions,
        description="TensorBoard event files in RUN_DIR/tensorboard.",
    ),
    LoggerSpec(
        name="mlflow",
        build=MLflowLogger,
        options=MLflowOptions,
        description="An MLflow run (local SQLite store by default).",
    ),
    LoggerSpec(
        name="wandb",
        build=WandbLogger,
        options=WandbOptions,
        description="A Weights & Biases run (offline without WANDB_API_KEY).",
    ),
)
