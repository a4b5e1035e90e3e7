"""Optional experiment trackers; ``metrics.jsonl`` is always written besides them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from genmod.errors import ConfigError

if TYPE_CHECKING:
    from genmod.metrics import EpochRecord


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

    def open(self, run_dir: Path) -> str:
        """Start writing; returns a line saying where, for the terminal."""
        self._writer = self._writer_class(log_dir=str(run_dir / "tensorboard"))
        return f"TensorBoard events in {run_dir / 'tensorboard'} (tensorboard --logdir {run_dir})"

    def log(self, record: EpochRecord) -> None:
        """One scalar per number: ``train/loss``, ``train/kl``, ``test/reconstruction``, ``lr``, ..."""
        for split in ("train", "test"):
            metrics = getattr(record, split)
            for name, value in {"loss": metrics.loss, **metrics.terms}.items():
                self._writer.add_scalar(f"{split}/{name}", value, record.epoch)
        self._writer.add_scalar("lr", record.lr, record.epoch)
        self._writer.add_scalar("seconds", record.seconds, record.epoch)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


LOGGERS = {"tensorboard": TensorBoardLogger}
