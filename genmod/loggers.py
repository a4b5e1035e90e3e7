"""Optional experiment trackers; ``metrics.jsonl`` is always written besides them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genmod.errors import ConfigError


class TensorBoardLogger:
    """Per-epoch scalars under ``RUN_DIR/tensorboard`` (``tensorboard --logdir RUN_DIR``)."""

    def __init__(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "--logger tensorboard needs the tensorboard package: pip install tensorboard"
            ) from None
        self._writer_class = SummaryWriter
        self._writer: Any = None

    def open(self, run_dir: Path) -> None:
        self._writer = self._writer_class(log_dir=str(run_dir / "tensorboard"))

    def log(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "epoch":
                self._writer.add_scalar(key, value, row["epoch"])
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


LOGGERS = {"tensorboard": TensorBoardLogger}
