"""What a run shows on the terminal: a live bar per epoch, one line per epoch, a summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from genmod.metrics import bits_per_dim

if TYPE_CHECKING:
    from genmod.metrics import EpochRecord, SplitMetrics


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
        quantity: str | None = "bound",
    ) -> None:
        """``where``: the device, and the processes and backend when there are several;
        ``arithmetic``: the layers' precision, and whether the model is compiled; ``dims``:
        the values per image where the model is discrete over 8-bit values, so that test
        losses are also shown in bits per dimension; ``quantity``: what the losses are (the
        model's bound; ``None``: it has none, and its terms are shown)."""
        self._dims = dims
        verb = "resuming" if resumed else "training"
        # Two short lines rather than one that wraps at 80 columns; the folder is never cut.
        self.console.print(
            f"[bold]{verb} {model}[/] from epoch {first_epoch} on {where}, {parameters:,} parameters",
            highlight=False,
        )
        self.console.print(
            f"  -> {out_dir}  ({arithmetic}; {'losses: ' + quantity if quantity else 'its losses'}, nats per image)",
            highlight=False,
            soft_wrap=True,
        )
        self._progress.start()

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None:
        # No loss before the first step of the epoch: "-", not "nan".
        self._task = self._progress.add_task("", total=steps, epoch=f"{epoch}/{epochs}", loss="-")

    def step(self, steps_done: int, loss: float) -> None:
        self._progress.update(self._task, completed=steps_done, loss=f"{loss:.2f}")

    def epoch_done(self, record: EpochRecord, epochs: int) -> None:
        self._progress.remove_task(self._task)
        validation = "" if record.validation is None else f"  val {_figures(record.validation)}"
        test = "" if record.test is None else f"  test {_figures(record.test)}"
        skipped = f"  {record.skipped} skipped" if record.skipped else ""
        if self._dims is not None and record.test is not None and record.test.loss is not None:
            test += f" ({bits_per_dim(record.test.loss, self._dims):.3f} bits/dim)"
        self.console.print(
            f"epoch {record.epoch:>3}/{epochs}  train {_figures(record.train)}{validation}"
            f"{test}  lr {record.lr:.0e}  {record.seconds:5.1f}s{skipped}",
            soft_wrap=True,
            highlight=False,
        )

    def note(self, text: str) -> None:
        """A message of short lines; paths in it are never broken."""
        self.console.print(text, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        self._progress.stop()

    def summary(
        self, history: list[EpochRecord], out_dir: Path, best: tuple[str, float, int] | None = None
    ) -> None:
        """The last epoch's figures; ``best``: the monitored metric, its best value and epoch."""
        last = history[-1]
        name = last.quantity
        table = Table(title="Run summary", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("epochs", str(last.epoch))
        splits = {
            "train": last.train,
            "validation": last.validation,
            "test": next((r.test for r in reversed(history) if r.test is not None), None),
        }
        for split, metrics in splits.items():
            if metrics is None:
                continue
            if name is not None and metrics.loss is not None:
                table.add_row(f"{split} {name} (nats/image)", f"{metrics.loss:.2f}")
            if split == "test" and self._dims is not None and metrics.loss is not None:
                table.add_row(f"test {name} (bits/dim)", f"{bits_per_dim(metrics.loss, self._dims):.3f}")
            if split == "test" or name is None:
                for term, value in metrics.terms.items():
                    table.add_row(f"{split} {term}", f"{value:.2f}")
        if best is not None:
            table.add_row(f"best {best[0]}", f"{best[1]:.2f} (epoch {best[2]})")
        table.add_row("training time", f"{sum(record.seconds for record in history):.1f} s")
        self.console.print(table)
        self.console.print(f"outputs in {out_dir}", highlight=False, soft_wrap=True)


def _figures(metrics: SplitMetrics) -> str:
    """A split's figures on an epoch line: its bound, or its named terms for a model without
    one; then its sample-quality figures, if computed."""
    if metrics.loss is not None:
        shown = [f"{metrics.loss:7.2f}"]
    else:
        shown = [f"{name} {value:.3f}" for name, value in metrics.terms.items()]
    shown += [
        f"{name} {value:.4g}" for name, value in metrics.sample_quality.items() if not name.endswith("_se")
    ]
    return " ".join(shown)
