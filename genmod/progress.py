"""What a run shows on the terminal: a live bar per epoch, one line per epoch, a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table


class RunReporter:
    """Rich output for a training run; pass a ``Console`` writing elsewhere to capture it."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self._progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.2f}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._task: Any = None

    def start(
        self, model: str, out_dir: Path, device: str, parameters: int, first_epoch: int, resumed: bool
    ) -> None:
        verb = "resuming" if resumed else "training"
        self.console.print(
            f"[bold]{verb} {model}[/] from epoch {first_epoch} on {device} "
            f"({parameters:,} parameters) -> {out_dir}"
        )
        self._progress.start()

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None:
        self._task = self._progress.add_task("", total=steps, epoch=f"{epoch}/{epochs}", loss=float("nan"))

    def step(self, steps_done: int, loss: float) -> None:
        self._progress.update(self._task, completed=steps_done, loss=loss)

    def epoch_done(self, row: dict[str, Any], epochs: int) -> None:
        self._progress.remove_task(self._task)
        self.console.print(
            f"epoch {row['epoch']:>3}/{epochs}  train -ELBO {row['train_loss']:8.2f}  "
            f"test -ELBO {row['test_loss']:8.2f}  KL {row['test_kl']:6.2f}  "
            f"lr {row['lr']:.0e}  {row['seconds']:6.1f}s",
            soft_wrap=True,
        )

    def stop(self) -> None:
        self._progress.stop()

    def summary(self, history: list[dict[str, Any]], out_dir: Path) -> None:
        last = history[-1]
        best = min(history, key=lambda row: row["test_loss"])
        table = Table(title="Run summary", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("epochs", str(last["epoch"]))
        table.add_row("train -ELBO (nats/image)", f"{last['train_loss']:.2f}")
        table.add_row("test -ELBO (nats/image)", f"{last['test_loss']:.2f}")
        table.add_row("best test -ELBO", f"{best['test_loss']:.2f} (epoch {best['epoch']})")
        table.add_row("test KL", f"{last['test_kl']:.2f}")
        table.add_row("training time", f"{sum(row['seconds'] for row in history):.1f} s")
        table.add_row("outputs", str(out_dir))
        self.console.print(table)
