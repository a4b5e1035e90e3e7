"""The ``genmod`` command line.

Only light modules are imported here: torch, the plugins and everything that needs them are
imported inside the commands that use them, so that ``genmod --help`` and ``genmod --version``
answer at once instead of after the seconds torch takes to import.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import os
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional, TypeVar, Union, get_args, get_origin

import typer
from pydantic import BaseModel
from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

import genmod
from genmod import (
    ComponentRef,
    ConfigError,
    DataConfig,
    GenmodError,
    TrainConfig,
    UnknownNameError,
    __version__,
)

if TYPE_CHECKING:
    from genmod import NLLResult, Registry, RunSummary

PLUGINS_ENV = "GENMOD_PLUGINS"


app = typer.Typer(
    name="genmod",
    help="Train and inspect deep generative models built from plugins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
RunDataDirOption = Annotated[
    Optional[Path], typer.Option(help="Folder holding the dataset (default: the run's).")
]
RunDir = Annotated[
    Path,
    typer.Argument(help="A run folder written by 'genmod run', or a weights file from 'genmod export'."),
]
CheckpointOption = Annotated[
    Optional[str],
    typer.Option(
        "--checkpoint",
        help="best (the best validation epoch's weights) or last; default: best where the run kept one.",
    ),
]

PluginOption = Annotated[
    Optional[list[Path]],
    typer.Option(
        "--plugin",
        help=f"Load a plugin from a .py file (repeatable; also ${PLUGINS_ENV}, path-separated).",
        dir_okay=False,
    ),
]
TrustOption = Annotated[
    bool,
    typer.Option(
        "--trust-plugins",
        help="Import the plugin files the run names even if you did not train with them here.",
    ),
]


def _user_errors(command: F) -> F:
    """Print a GenmodError as one line and exit with its code, instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except GenmodError as exc:
            if os.environ.get("RANK", "0") == "0":  # one message, not one per process
                # A stop the user asked for (exit 130) is reported, not called an error.
                label = "" if exc.exit_code == 130 else "[bold red]error:[/] "
                err_console.print(f"{label}{escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _table(title: str, *columns: str, fixed: Sequence[str] = ()) -> Table:
    """A table without vertical rules, so that at 80 columns the width goes to the text. The
    ``fixed`` columns (names a user copies: runs, models, plugins) are never wrapped or cut."""
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=column in fixed, overflow="fold" if column in fixed else "ellipsis")
    return table


def _fit(table: Table, rows: Sequence[Sequence[str]]) -> Table:
    """Add ``rows``, giving each fixed column the width of its longest cell."""
    for index, column in enumerate(table.columns):
        if column.no_wrap:
            column.min_width = max([len(str(column.header)), *(len(row[index]) for row in rows)])
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table


def _explicit_plugins(plugin_files: list[Path] | None) -> list[Path]:
    """The plugin files the user named: --plugin, then $GENMOD_PLUGINS."""
    return [*(plugin_files or []), *(Path(p) for p in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if p)]


@contextlib.contextmanager
def _progress_bar(label: str, total: int | None, unit: str) -> Iterator[Callable[..., None]]:
    """A bar with an ETA for a long job; silent when the output is not a terminal (logs, pipes).
    Yields ``advance(done, total=None)`` (the total may come with the first step)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(unit), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task(label, total=total)

        def advance(done: int, of: int | None = None) -> None:
            size = of if of is not None else total
            bar.update(task, completed=done if size is None else min(done, size), total=size)

        yield advance


def _registry(plugin_files: list[Path] | None, *, diagnose: bool = False) -> Registry:
    """The registry with the installed plugins and the explicit ones. A plugin the user named
    (--plugin, $GENMOD_PLUGINS) must load: every command stops if one fails, except the
    diagnostic ones (``diagnose``: list, plugins), which show the failure."""
    return genmod.registry(_explicit_plugins(plugin_files), check=not diagnose)


def _print_plugin_problems(registry: Registry) -> None:
    """The failed plugins, conflicting names and overrides, one line each (long ones wrap at
    the terminal's edge, never inside a name: soft-wrapped)."""
    for failure in registry.failures:
        console.print(
            f"[red]failed to load[/] plugin '{escape(failure.plugin.name)}': {escape(failure.error)}",
            highlight=False,
            soft_wrap=True,
        )
    if registry.conflicts:
        names = "; ".join(c.describe() for c in registry.conflicts.values())
        console.print(
            f"[red]conflicts[/] (unusable until one is removed): {escape(names)}",
            highlight=False,
            soft_wrap=True,
        )
    for override in registry.overrides:
        console.print(f"[yellow]override[/]: {escape(override.describe())}", highlight=False, soft_wrap=True)


@app.command("list")
@_user_errors
def list_command(
    kind: Annotated[
        Optional[str], typer.Option(help="Only this kind of thing: model, prior, dataset, ...")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    plugin: PluginOption = None,
) -> None:
    """List registered models, components and datasets.

    Also names plugins that failed to load, conflicting names and overrides."""
    registry = _registry(plugin, diagnose=True)
    entries = registry.entries(kind)
    if as_json:
        listed = [
            {
                "kind": e.kind,
                "name": e.name,
                "plugin": e.plugin.name,
                "version": e.plugin.version,
                "description": e.description,
            }
            for e in entries
        ]
        typer.echo(json.dumps({"entries": listed, **_problems_json(registry)}, indent=2))
        return
    # The version beside the plugin's name: one column fewer, so it fits 80 columns too.
    columns = ("kind", "name", "plugin", "description")
    rows = [(e.kind, e.name, f"{e.plugin.name} {e.plugin.version}", e.description) for e in entries]
    console.print(_fit(_table("genmod registry", *columns, fixed=("kind", "name", "plugin")), rows))
    _print_plugin_problems(registry)


def _problems_json(registry: Registry) -> dict[str, Any]:
    return {
        "failed": [
            {"plugin": f.plugin.name, "version": f.plugin.version, "error": f.error}
            for f in registry.failures
        ],
        "conflicts": [
            {"kind": c.kind, "name": c.name, "plugins": [p.name for p in c.plugins]}
            for c in registry.conflicts.values()
        ],
        "overrides": [
            {
                "kind": o.entry.kind,
                "name": o.entry.name,
                "plugin": o.entry.plugin.name,
                "replaces": o.replaced.name,
            }
            for o in registry.overrides
        ],
    }


@app.command("plugins")
@_user_errors
def plugins_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    plugin: PluginOption = None,
) -> None:
    """List plugins, their hooks and what they registered.

    For each loaded plugin: its version, the hooks it implements and how many things of each
    kind it registered; then the plugins that failed to load, with their error."""
    registry = _registry(plugin, diagnose=True)
    plural: dict[str, str] = {k.name: k.plural for k in registry.kinds.values()}
    if as_json:
        listed = [
            {
                "plugin": p.info.name,
                "version": p.info.version,
                "explicit": p.info.explicit,
                "hooks": list(p.hooks),
                "registered": p.registered,
            }
            for p in registry.plugins
        ]
        typer.echo(json.dumps({"plugins": listed, **_problems_json(registry)}, indent=2))
        return
    rows = [
        (
            p.info.name,
            p.info.version,
            ", ".join(hook.removeprefix("register_") for hook in p.hooks),
            ", ".join(f"{n} {plural[k] if n > 1 else k}" for k, n in p.registered.items()) or "nothing",
        )
        for p in registry.plugins
    ]
    table = _table(
        "genmod plugins", "plugin", "version", "hooks (register_*)", "registered", fixed=("plugin", "version")
    )
    console.print(_fit(table, rows))
    _print_plugin_problems(registry)


@app.command()
@_user_errors
def run(
    model: Annotated[
        Optional[str],
        typer.Argument(help="Registered model to train with its shipped recipe, or a run config YAML file."),
    ] = None,
    config: Annotated[
        Optional[Path], typer.Option("--config", "-c", help="Run config YAML file.", dir_okay=False)
    ] = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option("--set", help="Override a config key: --set train.lr=3e-4 (repeatable)."),
    ] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Shorthand for --set train.epochs=N.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Shorthand for --set train.seed=N.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder holding the dataset (data.root).")] = None,
    logger: Annotated[
        Optional[list[str]],
        typer.Option(help="Also report to this tracker: tensorboard, mlflow, wandb (repeatable)."),
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option(help="Output folder; default runs/<model>-<timestamp>.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Write into --out even if it is not empty.")] = False,
    resume: Annotated[
        Optional[Path],
        typer.Option(help="Continue the run in this folder from its last checkpoint.", file_okay=False),
    ] = None,
    nproc: Annotated[
        Optional[int],
        typer.Option(min=1, help="Train with N processes on this machine (DistributedDataParallel)."),
    ] = None,
    plugin: PluginOption = None,
    trust_plugins: TrustOption = False,
) -> None:
    """Train a model: samples, loss plot, metrics, checkpoint.

    Starts from the model's shipped recipe, a --config file or a run folder (--resume)."""
    if resume is not None and (model or config or set_ or seed is not None or out is not None):
        raise ConfigError(
            "--resume continues a run with its saved config: drop the model, --config, --set, "
            "--seed and --out (only --epochs, --device and --data-dir may change)"
        )
    if model is not None and config is not None:
        raise ConfigError(f"{config} names its model: drop '{model}' or --config")
    shorthands = {
        "train.epochs": epochs,
        "train.seed": seed,
        "train.device": device,
        "data.root": data_dir,
        "train.loggers": f"[{', '.join(logger)}]" if logger else None,
    }
    overrides = [*(set_ or []), *(f"{key}={value}" for key, value in shorthands.items() if value is not None)]
    options: dict[str, Any] = {
        "out": out,
        "resume": resume,
        "force": force,
        "plugins": _explicit_plugins(plugin),
        "trust_plugins": trust_plugins,
        "sets": overrides,
    }
    if nproc is not None and nproc > 1:
        genmod.launch(nproc, config or model, **options)
    else:
        genmod.train(config or model, console=console, **options)


def _opened(
    run_dir: Path, plugin: list[Path] | None, device: str, checkpoint: str | None, trust_plugins: bool
) -> genmod.TrainedRun:
    """:func:`genmod.open_run` with the plugin files named on the command line."""
    return genmod.open_run(
        run_dir, checkpoint, device=device, plugins=_explicit_plugins(plugin), trust_plugins=trust_plugins
    )


SampleOption = Annotated[
    Optional[list[str]],
    typer.Option(help="A sampling option of the model, KEY=VALUE (e.g. sampler=ddim); repeatable."),
]


def _sampling(pairs: list[str] | None) -> dict[str, str]:
    """``--option KEY=VALUE`` pairs as a mapping (the model's ``sample_options`` check them)."""
    malformed = [pair for pair in pairs or [] if "=" not in pair]
    if malformed:
        raise ConfigError(f"--option {malformed[0]}: write it as KEY=VALUE")
    return dict(pair.split("=", 1) for pair in pairs or [])


LIKELIHOOD = "likelihood"
"""The --metric name of the likelihood itself, beside the registered sample-quality metrics."""


@app.command("eval")
@_user_errors
def eval_command(
    run_dir: RunDir,
    metric: Annotated[
        Optional[list[str]],
        typer.Option(
            help="What to compute: likelihood (the default), or a sample-quality metric (fid, kid, "
            "precision-recall: genmod list --kind evaluator); repeatable."
        ),
    ] = None,
    k: Annotated[
        int, typer.Option("--k", min=1, help="Importance samples per image (at most 1,000,000).")
    ] = 5000,
    split: Annotated[str, typer.Option(help="test, validation or train.")] = "test",
    images: Annotated[Optional[int], typer.Option(min=1, help="Evaluate the first N images only.")] = None,
    samples: Annotated[
        int, typer.Option(min=2, help="Samples drawn for the sample-quality metrics.")
    ] = 10_000,
    features: Annotated[
        str,
        typer.Option(help="Feature network of the sample metrics: auto, mnist, fashion-mnist, inception-v3."),
    ] = "auto",
    features_weights: Annotated[
        Optional[Path],
        typer.Option(
            help="The feature network's weights file (default: shipped, or the features folder).",
            dir_okay=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the importance samples and of the samples drawn.")] = 0,
    option: SampleOption = None,
    device: DeviceOption = "auto",
    data_dir: RunDataDirOption = None,
    checkpoint: CheckpointOption = None,
    precision: Annotated[
        Optional[str],
        typer.Option(
            help="Layers in auto (bf16 where native), fp32, bf16 or fp16; sums are float32. "
            "Default: auto for the likelihood, fp32 for drawing samples (as training draws them)."
        ),
    ] = None,
    compile: Annotated[
        Optional[bool],
        typer.Option("--compile/--no-compile", help="torch.compile the weights; default: from 1M samples."),
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option("-o", "--output", help="JSON file; default RUN_DIR/eval.json.", dir_okay=False),
    ] = None,
    plugin: PluginOption = None,
    trust_plugins: TrustOption = False,
) -> None:
    """Evaluate a trained run: its likelihood (importance-sampled, exact or a bound, as the
    model offers), and sample-quality metrics with --metric.

    Writes RUN_DIR/eval.json (or --output), then prints it."""
    chosen = list(dict.fromkeys(metric or [LIKELIHOOD]))
    sample_metrics = [name for name in chosen if name != LIKELIHOOD]
    options = _sampling(option)
    if options and not sample_metrics:
        raise ConfigError("--option sets how samples are drawn: name a sample-quality --metric too")
    if LIKELIHOOD in chosen:
        with _progress_bar("evaluating", None, "images") as advance:
            result = genmod.evaluate(
                run_dir,
                k,
                limit=images,
                split=split,
                checkpoint=checkpoint,
                device=device,
                seed=seed,
                precision=precision or "auto",  # type: ignore[arg-type]  # checked there
                compile="auto" if compile is None else compile,
                plugins=_explicit_plugins(plugin),
                trust_plugins=trust_plugins,
                data_dir=data_dir,
                output=output,
                on_progress=lambda done, total: advance(done, total),
            )
        _print_likelihood(result, split, output)
    if sample_metrics:
        with _progress_bar("sampling", samples, "samples") as advance:
            results = genmod.sample_quality(
                run_dir,
                sample_metrics,
                samples=samples,
                split=split,
                features=features,
                features_weights=features_weights,
                checkpoint=checkpoint,
                device=device,
                seed=seed,
                precision=precision or "fp32",  # type: ignore[arg-type]  # checked there
                options=options,
                plugins=_explicit_plugins(plugin),
                trust_plugins=trust_plugins,
                data_dir=data_dir,
                output=output,
                on_progress=lambda done, total: advance(done, total),
            )
        table = Table(title=f"sample quality, {results[0].how.split(', ', 2)[0]}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_column("computed from")
        for r in results:
            shown = [f"{r.figures[name]:.4g}" for name in r.figures if not name.endswith("_se")]
            if f"{r.metric}_se" in r.figures:
                shown[0] += f" ± {r.figures[f'{r.metric}_se']:.2g}"
            table.add_row(
                ", ".join(name for name in r.figures if not name.endswith("_se")), " / ".join(shown), r.how
            )
        console.print(table)
        console.print(f"saved {results[0].report}", highlight=False, soft_wrap=True)


def _print_likelihood(result: NLLResult, split: str, output: Path | None) -> None:
    report = json.loads(result.report.read_text()) if result.report else {}
    title = f"{report.get('model')} after {report.get('epoch')} epochs, {split} set ({result.images} images)"
    table = Table(title=title)
    table.add_column("per image (nats)")
    table.add_column("value", justify="right")
    table.add_row(result.label, f"{result.nll:.2f} ± {result.nll_se:.2f}")
    if result.negative_elbo is not None and result.negative_elbo_se is not None:
        table.add_row("-ELBO", f"{result.negative_elbo:.2f} ± {result.negative_elbo_se:.2f}")
    if result.bits_per_dim is not None:
        table.add_row(f"{result.quantity}, bits/dim", f"{result.bits_per_dim:.3f}")
    table.add_row(
        "seconds", f"{result.seconds:.1f} ({result.precision}{', compiled' if result.compiled else ''})"
    )
    console.print(table)
    console.print(result.meaning, highlight=False, soft_wrap=True)
    kept = result.report is not None and output is None and result.report.name != "eval.json"
    if kept and result.report is not None:
        console.print(
            f"{result.report.with_name('eval.json')} holds another evaluation (another k, image count "
            f"or split), kept; this one went to {result.report}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"saved {result.report}", highlight=False, soft_wrap=True)


@app.command()
@_user_errors
def sample(
    run_dir: RunDir,
    n: Annotated[int, typer.Option("-n", min=1, help="Number of images (at most 4096).")] = 64,
    output: Annotated[
        Optional[Path], typer.Option("-o", "--output", help="PNG file; default RUN_DIR/samples.png.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the prior draws.")] = 0,
    option: SampleOption = None,
    device: DeviceOption = "auto",
    checkpoint: CheckpointOption = None,
    plugin: PluginOption = None,
    trust_plugins: TrustOption = False,
) -> None:
    """Draw images from a trained model.

    Samples from the model (a VAE's prior, decoded), saved as a grid."""
    options = _sampling(option)
    opened = _opened(run_dir, plugin, device, checkpoint, trust_plugins)
    path = opened.write_samples(n, output, seed=seed, options=options)
    console.print(f"saved {n} samples to {path}", highlight=False)


@app.command()
@_user_errors
def reconstruct(
    run_dir: RunDir,
    n: Annotated[int, typer.Option("-n", min=1, help="Number of test images.")] = 32,
    output: Annotated[
        Optional[Path], typer.Option("-o", "--output", help="PNG file; default RUN_DIR/reconstruct.png.")
    ] = None,
    device: DeviceOption = "auto",
    data_dir: RunDataDirOption = None,
    checkpoint: CheckpointOption = None,
    plugin: PluginOption = None,
    trust_plugins: TrustOption = False,
) -> None:
    """Reconstruct test images with a trained model.

    Test images in odd rows, their reconstructions in the row below."""
    opened = _opened(run_dir, plugin, device, checkpoint, trust_plugins)
    path, count = opened.write_reconstructions(n, output, root=data_dir)
    console.print(f"saved {count} reconstructions to {path}", highlight=False)


@app.command()
@_user_errors
def manifold(
    run_dir: RunDir,
    size: Annotated[int, typer.Option(min=2, help="Images per side of the grid.")] = 20,
    output: Annotated[
        Optional[Path], typer.Option("-o", "--output", help="PNG file; default RUN_DIR/manifold.png.")
    ] = None,
    device: DeviceOption = "auto",
    checkpoint: CheckpointOption = None,
    plugin: PluginOption = None,
    trust_plugins: TrustOption = False,
) -> None:
    """Decode a grid over a 2-D latent space.

    For latent-variable models with 2 latents (the VAE family's)."""
    path = _opened(run_dir, plugin, device, checkpoint, trust_plugins).write_manifold(size, output)
    console.print(f"saved a {size}x{size} latent manifold to {path}", highlight=False)


@app.command()
@_user_errors
def export(
    run_dir: RunDir,
    format: Annotated[str, typer.Option("--format", help="safetensors (the only format).")] = "safetensors",
    output: Annotated[
        Optional[Path], typer.Option("-o", "--output", help="The file; default RUN_DIR/model.safetensors.")
    ] = None,
    checkpoint: CheckpointOption = None,
    plugin: PluginOption = None,
    trust_plugins: TrustOption = False,
) -> None:
    """Write a run's weights and config as one portable file.

    safetensors: tensors and the resolved config as metadata; genmod eval, sample,
    reconstruct and genmod.load take the file in place of the run folder."""
    if format != "safetensors":
        raise ConfigError(f"--format must be safetensors, not '{format}'")
    path = genmod.export(
        run_dir, output, checkpoint=checkpoint, plugins=_explicit_plugins(plugin), trust_plugins=trust_plugins
    )
    console.print(f"exported {run_dir} to {path}", highlight=False, soft_wrap=True)


@app.command()
@_user_errors
def runs(
    directory: Annotated[Path, typer.Argument(help="Folder holding run folders.", file_okay=False)] = Path(
        "runs"
    ),
) -> None:
    """A table of past runs.

    Model, epochs, the test bound of the kept weights (best monitored epoch, else last) named
    as the model names it, the evaluated NLL with its epoch and images, training time."""
    _print_runs(directory)


def _print_runs(directory: Path, *, by_monitor: bool = False) -> None:
    """The ``genmod runs`` table of ``directory``; ``by_monitor``: best monitored value first."""
    summaries, damaged = genmod.list_runs(directory, by_monitor=by_monitor)
    columns = ("run", "model", "epochs", "test bound", "evaluated", "time")
    rows = [
        (
            summary.path.name,
            summary.model,
            f"{summary.epochs_done}/{summary.epochs_planned}",
            "-" if summary.test_loss is None else f"{summary.test_loss:.2f} {summary.quantity}",
            _evaluated(summary),
            f"{summary.seconds:.0f} s",
        )
        for summary in summaries
    ]
    if by_monitor:
        columns = ("run", "best monitored", *columns[2:])
        rows = [
            (row[0], "-" if s.best_validation is None else f"{s.best_validation:.2f} ({s.monitor})", *row[2:])
            for row, s in zip(rows, summaries, strict=True)
        ]
    table = _table(f"runs in {directory} (nats per image)", *columns, fixed=columns)
    console.print(_fit(table, rows))
    for line in damaged:
        console.print(f"[yellow]unreadable:[/] {escape(line)}", highlight=False, soft_wrap=True)


@app.command()
@_user_errors
def sweep(
    model: Annotated[str, typer.Argument(help="Registered model to sweep, from its recipe.")],
    set_: Annotated[
        list[str],
        typer.Option("--set", help="KEY=V1,V2,...: one axis of the grid (repeatable)."),
    ],
    parallel: Annotated[
        int, typer.Option(min=1, help="Runs trained at once; the cores are divided among them.")
    ] = 1,
    out: Annotated[
        Optional[Path],
        typer.Option(help="Folder of the sweep's runs; default sweeps/<model>.", file_okay=False),
    ] = None,
    epochs: Annotated[
        Optional[int], typer.Option(help="Shorthand for --set train.epochs=N in every run.")
    ] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder holding the dataset (data.root).")] = None,
    plugin: PluginOption = None,
    trust_plugins: TrustOption = False,
) -> None:
    """Train a grid of overrides, each run in its own folder.

    Every combination of the --set values; call it again to continue the unfinished runs
    (finished ones are skipped); Ctrl-C stops every run at a checkpoint. Ends with the runs
    table, best monitored value first."""
    folder = out or Path("sweeps") / model
    try:
        done = genmod.sweep(
            model,
            set_,
            folder,
            parallel=parallel,
            epochs=epochs,
            device=device,
            data_dir=data_dir,
            plugins=_explicit_plugins(plugin),
            trust_plugins=trust_plugins,
            log=lambda line: console.print(line, highlight=False),
        )
    except KeyboardInterrupt:
        _print_runs(folder, by_monitor=True)
        raise genmod.Interrupted(
            f"stopped; every run kept its checkpoint. Continue the sweep with the same command:\n"
            f"  genmod sweep {model} {' '.join('--set ' + s for s in set_)} --out {folder}"
        ) from None
    _print_runs(folder, by_monitor=True)
    if done.failed:
        raise GenmodError(
            f"{done.failed} of {len(done.runs)} runs failed: their logs are in {folder / 'logs'}"
        )


def _evaluated(summary: RunSummary) -> str:
    """``eval.json``'s figure, what it is, and the weights and images it came from (for a model
    without a likelihood, its first sample-quality figure)."""
    if summary.nll is None:
        for metric in summary.sample_quality.values():
            name, value = next(iter(metric["figures"].items()))
            return f"{name} {value:.4g} (ep {metric['epoch']}, {metric['samples']} samples)"
        return "-"
    what = f"IS k={summary.nll_k}" if summary.nll_quantity == "IS-NLL" else summary.nll_quantity
    images = "" if summary.nll_images is None else f", {summary.nll_images} img"
    stale = " stale" if summary.stale_evaluation else ""
    return f"{summary.nll:.2f} {what} (ep {summary.nll_epoch}{images}){stale}"


_TYPE_WORDS = {int: "integer", float: "number", str: "text", bool: "true or false", Path: "path"}


def _type_name(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """A config key's type in plain words: ``list of positive integers``, not pydantic's repr."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is ComponentRef:
        return "component name"
    if origin is Annotated:
        return _type_name(args[0], args[1:])
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        words = [_type_name(a, metadata) for a in args if a is not type(None)]
        return " or ".join(words) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {_type_name(args[0])}s"
    if origin is tuple:
        return f"{len(args)} {_type_name(args[0])}s"
    word = _TYPE_WORDS.get(annotation, getattr(annotation, "__name__", str(annotation)))
    gt = next((m.gt for m in metadata if hasattr(m, "gt")), None)
    ge = next((m.ge for m in metadata if hasattr(m, "ge")), None)
    if gt == 0 or (annotation is int and ge == 1):
        return f"positive {word}"
    if ge == 0:
        return f"{word} >= 0"
    return word


def _schema(config: type[BaseModel], title: str) -> Group:
    """A config class's keys as a help listing: ``key: type = default``, the description
    indented below. A list rather than a table, so that at 80 columns nothing is cropped."""
    lines: list[Text | Padding] = [Text(title, style="bold")]
    for key, field in config.model_fields.items():
        default = "required" if field.is_required() else field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = default.model_dump()
        shown = "" if default == "required" else f" = {default}"
        lines.append(
            Text.assemble(("  " + key, "bold"), f": {_type_name(field.annotation, field.metadata)}{shown}")
        )
        if field.description:
            lines.append(Padding(Text(field.description), (0, 0, 0, 6)))
    return Group(*lines)


@app.command()
@_user_errors
def info(
    name: Annotated[
        str,
        typer.Argument(
            help="A model, component or dataset name from 'genmod list', data or train, or a run folder."
        ),
    ],
    plugin: PluginOption = None,
) -> None:
    """What a name is, where it comes from, its options.

    NAME is anything 'genmod list' shows, 'data' or 'train' for those config sections, or a
    run folder or shipped model (pretrained/vae): where it came from."""
    sections: dict[str, type[BaseModel]] = {"data": DataConfig, "train": TrainConfig}
    if name in sections:
        console.print(_schema(sections[name], f"the {name} section of a run config"), highlight=False)
        return
    if (Path(name) / "config.yaml").is_file():
        _run_origin(Path(name))
        return
    registry = _registry(plugin)
    entries = [e for e in registry.entries() if e.name == name]
    if not entries:
        close = difflib.get_close_matches(name, {e.name for e in registry.entries()}, n=3, cutoff=0.5)
        hint = f": did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"nothing named '{name}' is registered{hint} (see 'genmod list')")
    for entry in entries:
        console.print(f"[bold]{entry.kind} {entry.name}[/]: {entry.description}", highlight=False)
        console.print(f"  from plugin '{entry.plugin.name}' {entry.plugin.version}", highlight=False)
        if entry.kind == "model":
            console.print(f"  recipe: {entry.spec.recipe or 'the config defaults'}", highlight=False)
            console.print(_schema(entry.spec.config, "model section"), highlight=False)
        elif entry.kind == "dataset":
            console.print(f"  data root: {entry.spec.expects}", highlight=False)
        elif entry.kind == "kind":
            base = entry.spec.base
            console.print(
                f"  components: registered with {entry.spec.hook}; each builds a {base.__module__}.{base.__name__}",
                highlight=False,
            )
        else:
            if entry.kind == "evaluator":
                console.print(f"  use: genmod eval RUN --metric {entry.name}", highlight=False)
            console.print(
                _schema(entry.spec.options, f"options ({entry.kind}: {{name: {entry.name}, ...}})"),
                highlight=False,
            )


def _run_origin(run_dir: Path) -> None:
    """Where a run folder or shipped model came from: its recipe, how long it trained, which
    epoch's weights it holds, and its evaluation."""
    summary = genmod.summarize(run_dir)
    if summary is None:
        raise ConfigError(f"{run_dir} has a config.yaml but no readable metrics: it is not a genmod run")
    lines = [
        f"[bold]run {run_dir}[/]: model {summary.model}",
        f"  recipe: {run_dir / 'config.yaml'}; retrain it with",
        f"    genmod run --config {run_dir / 'config.yaml'}",
        f"  trained {summary.epochs_done} of {summary.epochs_planned} epochs, {summary.seconds:,.0f} s",
    ]
    if summary.best_epoch is not None:
        lines.append(
            f"  weights: epoch {summary.best_epoch}, the best {summary.monitor} ({summary.best_validation:.2f})"
        )
    evaluation = summary.evaluation
    if "nll" in evaluation:  # a likelihood was evaluated (null where not finite)
        nll = evaluation.get("nll")
        figure = "not finite" if nll is None else f"{nll:.2f} ± {evaluation['nll_se']:.2f} nats"
        stale = (
            f"; stale: of epoch {evaluation.get('epoch')}'s weights, these are epoch {summary.kept_epoch}'s"
            if evaluation.get("epoch") != summary.kept_epoch
            else ""
        )
        sampled = f"k={evaluation['k']}, " if evaluation.get("k") is not None else ""
        lines.append(
            f"  {evaluation['split']} {summary.nll_quantity} {figure} "
            f"(genmod eval: {sampled}{evaluation['images']:,} images{stale})"
        )
    for metric in summary.sample_quality.values():
        figures = ", ".join(f"{name} {value:.4g}" for name, value in metric["figures"].items())
        lines.append(f"  {figures} (genmod eval of epoch {metric['epoch']}: {metric['how']})")
    lines += _plugin_file_lines(run_dir)
    console.print("\n".join(lines), highlight=False, soft_wrap=True)


def _plugin_file_lines(run_dir: Path) -> list[str]:
    """The plugin files a run would import, each with whether it is trusted (none is imported)."""

    def state(written: Path) -> str:
        if not written.is_absolute():
            return "not trusted (a relative path): not run unless you pass --plugin FILE"
        if not written.is_file():
            return "missing: pass its new place with --plugin FILE"
        if genmod.is_trusted(written):
            return "trusted: you trained with it here and it is unchanged"
        return "not trusted: not run unless you pass --plugin FILE or --trust-plugins"

    return [f"  plugin file {escape(str(p))}: {state(p)}" for p in genmod.remembered_plugins(run_dir)]


@app.command("new-plugin")
@_user_errors
def new_plugin_command(
    name: Annotated[str, typer.Argument(help="Plugin name, e.g. 'laplace' (package genmod-laplace).")],
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to create the package folder.", file_okay=False)
    ] = Path("."),
) -> None:
    """Create a plugin package to start from.

    An installable package with an example prior, a model, its recipe and offline tests."""
    root = genmod.new_plugin(name, directory)
    console.print(f"created {root}\nnext: pip install -e {root} && genmod list", highlight=False)


data_app = typer.Typer(help="Prepare datasets: pack one into shards to stream.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("pack")
@_user_errors
def pack(
    source: Annotated[
        str,
        typer.Argument(help="A registered dataset (mnist) or a folder with train/ and test/ image files."),
    ],
    out_dir: Annotated[
        Path, typer.Argument(help="The folder to write; it must not exist yet.", file_okay=False)
    ],
    data_dir: Annotated[
        Optional[Path], typer.Option(help="Folder holding the registered dataset (default as for run).")
    ] = None,
    limit: Annotated[
        Optional[int], typer.Option(min=1, help="Pack the first N training images only.")
    ] = None,
    shard_mb: Annotated[float, typer.Option(min=0.01, help="Size of a shard in MB.")] = 64.0,
    plugin: PluginOption = None,
) -> None:
    """Write a dataset as shards that data.name streaming reads.

    Train with: genmod run mlp-vae --set data.name=streaming --data-dir OUT_DIR"""
    counts, shape = genmod.pack_dataset(
        source, out_dir, root=data_dir, limit=limit, shard_mb=shard_mb, plugins=_explicit_plugins(plugin)
    )
    console.print(
        f"packed {counts['train']:,} training and {counts['test']:,} test images of shape "
        f"{'x'.join(map(str, shape))} into {out_dir}\n"
        f"train on them with: genmod run MODEL --set data.name=streaming --data-dir {out_dir}",
        highlight=False,
        soft_wrap=True,
    )


features_app = typer.Typer(help="Feature networks of the sample-quality metrics.", no_args_is_help=True)
app.add_typer(features_app, name="features")


@features_app.command("train")
@_user_errors
def features_train(
    dataset: Annotated[str, typer.Argument(help="mnist or fashion-mnist (torchvision's copy, with labels).")],
    out: Annotated[
        Optional[Path],
        typer.Option(help="Weights file to write; default: the features folder.", dir_okay=False),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights and the batches.")] = 0,
    data_dir: Annotated[
        Optional[Path], typer.Option(help="Folder holding the dataset (default as for run).")
    ] = None,
) -> None:
    """Train the classifier whose features genmod's FID, KID and precision/recall compare for
    1x28x28 images (genmod ships both; this is how they were made)."""
    trained = genmod.train_features(
        dataset,
        out,
        epochs=epochs,
        seed=seed,
        root=data_dir,
        on_epoch=lambda epoch, loss: console.print(f"epoch {epoch}/{epochs}  cross-entropy {loss:.4f}"),
    )
    console.print(
        f"saved {trained.path} ({'float16' if trained.float16 else 'float32'}, sha256 {trained.sha256})\n"
        f"test accuracy {trained.test_accuracy:.2%}; use it with genmod eval --features-weights {trained.path}",
        highlight=False,
        soft_wrap=True,
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(f"genmod {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Train and inspect deep generative models built from plugins."""
    global console, err_console
    # Made for each command rather than at import, so that output follows the terminal (width,
    # colour) of the moment the command runs, also when one process runs several commands.
    console, err_console = Console(), Console(stderr=True)


def main() -> None:
    from genmod.openmp import announce_training, choose_wait_policy

    # Before anything imports torch: libgomp reads the policy when it loads. A training
    # announces itself first, so that two started together see each other.
    training = len(sys.argv) > 1 and sys.argv[1] == "run"
    choose_wait_policy(announce_training() if training else None)
    app()
