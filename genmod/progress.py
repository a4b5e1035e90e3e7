"""What a run shows on the terminal: a live bar per epoch, one line per epoch, a summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from genmod.metrics import bits_per_dim

if TYPE_CHECKING:
    from genmod.metrics import EpochRecord


class RunReporter:
    """Rich output for a training run; pass a ``Console`` writing elsewhere to capture it."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self._progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._task: Any = None
        self._dims: int | None = None

    def start(
        self,
        model: str,
        out_dir: Path,
        where: str,
        arithmetic: str,
        parameters: int,
        first_epoch: int,
        resumed: bool,
        dims: int | None = None,
    ) -> None:
        """``where``: the device, and the processes and backend when there are several;
        ``arithmetic``: the layers' precision, and whether the model is compiled; ``dims``:
        the values per image where the model is discrete over 8-bit values, so that test
        losses are also shown in bits per dimension."""
        self._dims = dims
        verb = "resuming" if resumed else "training"
        # Two short lines rather than one that wraps at 80 columns; the folder is never cut.
        self.console.print(
            f"[bold]{verb} {model}[/] from epoch {first_epoch} on {where}, {parameters:,} parameters",
            highlight=False,
        )
        self.console.print(
            f"  -> {out_dir}  ({arithmetic}; losses: nats per image)", highlight=False, soft_wrap=True
        )
        self._progress.start()

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None:
        # No loss before the first step of the epoch: "-", not "nan".
        self._task = self._progress.add_task("", total=steps, epoch=f"{epoch}/{epochs}", loss="-")

    def step(self, steps_done: int, loss: float) -> None:
        self._progress.update(self._task, completed=steps_done, loss=f"{loss:.2f}")

    def epoch_done(self, record: EpochRecord, epochs: int) -> None:
        self._progress.remove_task(self._task)
        validation = "" if record.validation is None else f"  val {record.validation.loss:7.2f}"
        skipped = f"  {record.skipped} skipped" if record.skipped else ""
        bits = "" if self._dims is None else f" ({bits_per_dim(record.test.loss, self._dims):.3f} bits/dim)"
        self.console.print(
            f"epoch {record.epoch:>3}/{epochs}  train {record.train.loss:7.2f}{validation}  "
            f"test {record.test.loss:7.2f}{bits}  lr {record.lr:.0e}  {record.seconds:5.1f}s{skipped}",
            soft_wrap=True,
            highlight=False,
        )

    def note(self, text: str) -> None:
        """A message of short lines; paths in it are never broken."""
        self.console.print(text, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        self._progress.stop()

    def summary(self, history: list[EpochRecord], out_dir: Path) -> None:
        last = history[-1]
        table = Table(title="Run summary", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("epochs", str(last.epoch))
        table.add_row("train -ELBO (nats/image)", f"{last.train.loss:.2f}")
        if last.validation is not None:
            best = min(history, key=lambda record: record.validation.loss if record.validation else 0.0)
            assert best.validation is not None
            table.add_row("validation -ELBO", f"{last.validation.loss:.2f}")
            table.add_row("best validation -ELBO", f"{best.validation.loss:.2f} (epoch {best.epoch})")
        table.add_row("test -ELBO (nats/image)", f"{last.test.loss:.2f}")
        if self._dims is not None:
            table.add_row("test -ELBO (bits/dim)", f"{bits_per_dim(last.test.loss, self._dims):.3f}")
        for name, value in last.test.terms.items():
            table.add_row(f"test {name}", f"{value:.2f}")
        table.add_row("training time", f"{sum(record.seconds for record in history):.1f} s")
        self.console.print(table)
        self.console.print(f"outputs in {out_dir}", highlight=False, soft_wrap=True)
