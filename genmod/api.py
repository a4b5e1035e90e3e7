"""genmod from Python: train, load, evaluate, and the registry, for notebooks and scripts.

The command line is a thin layer over the functions the ``genmod`` facade exports:
``genmod run`` is :func:`train`, ``genmod eval`` is :func:`evaluate` and
:func:`sample_quality`, ``sample``, ``reconstruct`` and ``manifold`` start from
:func:`genmod.open_run`.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import torch
import yaml
from rich.console import Console
from rich.markup import escape

from genmod.checkpoint import EXPORTED_SUFFIX
from genmod.config import EVAL_BATCH_SIZE, MAX_K, Compile, ComponentRef, Precision, RunConfig
from genmod.config_loader import (
    apply_override,
    in_order,
    read_run_config,
    resolve_run_config,
    validate_run_config,
)
from genmod.errors import ConfigError, GenmodError, UntrustedPluginError
from genmod.plugins import Registry, load_registry

if TYPE_CHECKING:
    from genmod.data import Data
    from genmod.evaluation import NLLResult
    from genmod.model import GenerativeModel
    from genmod.quality import SampleQuality
    from genmod.runner import Run
    from genmod.trained import TrainedRun


def registry(
    plugins: Sequence[str | Path] = (),
    *,
    run: str | Path | None = None,
    trust_plugins: bool = False,
    check: bool = True,
) -> Registry:
    """Every installed plugin's models, components and datasets, plus the plugin files in
    ``plugins`` (remembered as trusted, see :mod:`genmod.trust`) and, for a ``run`` folder,
    the plugin files it was trained with (only trusted ones, or with ``trust_plugins``).
    Named plugin files must load, unless ``check=False``: then a failure is kept in
    ``failures``, as ``genmod list`` shows it. ``registry().entries("prior")`` lists the
    priors; ``registry().build_component("prior", ComponentRef(name="mixture"), context)``
    builds one."""
    files = plugin_files(
        None if run is None else Path(run), [Path(p) for p in plugins], trust_plugins=trust_plugins
    )
    loaded = load_registry(files)
    if check:
        loaded.check_explicit_plugins()
    return loaded


def plugin_files(run: Path | None, given: Sequence[Path] = (), *, trust_plugins: bool = False) -> list[Path]:
    """The plugin files a command imports: those the user named (``given``, remembered as
    trusted, see :mod:`genmod.trust`), then those the run was trained with.

    A remembered file is imported only if it is trusted, or with ``trust_plugins``; otherwise
    the command stops in one line naming it. An exported weights file names no plugin files.
    """
    from genmod import trust

    given = list(given)
    trust.remember(given)
    return [*given, *saved_plugins(run, given, trust_plugins=trust_plugins)] if run else given


def remembered_plugins(run: str | Path) -> list[Path]:
    """The plugin files a run folder's config (or an exported file's metadata, before genmod
    0.3) names, as written there; [] where it names none or cannot be read. None of them is
    imported (:func:`is_trusted` says which would be)."""
    run = Path(run)
    try:
        if run.suffix == EXPORTED_SUFFIX and run.is_file():
            from genmod.checkpoint import exported_plugin_files

            saved: object = exported_plugin_files(run)
        elif (run / "config.yaml").is_file():
            saved = read_run_config(run).get("plugins") or []
        else:
            return []
    except (GenmodError, OSError, yaml.YAMLError, AttributeError):
        return []  # not a run folder: the caller says so in its own words
    return [Path(str(p)) for p in saved] if isinstance(saved, list) else []


def saved_plugins(run_dir: Path, given: Sequence[Path] = (), *, trust_plugins: bool = False) -> list[Path]:
    """The plugin files a run was trained with (its config's ``plugins``), to load again.

    genmod records absolute paths. A remembered file is loaded only if this user named it on
    this machine and it is unchanged since (:mod:`genmod.trust`), or with ``trust_plugins``
    (a relative path is then taken from the run folder, never from the current folder). A
    file passed again is not loaded twice; plugin files given on the command line stand in for
    remembered ones that are gone or not trusted; without them, either is an error.
    """
    from genmod import trust

    names = {Path(p).resolve() for p in given}
    found = []
    for written in remembered_plugins(run_dir):
        path = written if written.is_absolute() else run_dir / written
        if path.resolve() in names:
            continue
        trusted = trust_plugins or (written.is_absolute() and trust.is_trusted(path))
        if given and not (trusted and path.is_file()):
            continue
        if not trusted:
            raise UntrustedPluginError(
                f"{run_dir} names the plugin file {written}, which was not run: genmod runs only "
                "plugin files you name or trained with here, unchanged. If you trust it, pass "
                f"--plugin {written} (or --trust-plugins)"
            )
        if not path.is_file():
            raise ConfigError(
                f"{run_dir} was trained with the plugin file {written}, which no longer exists: "
                "pass its new place with --plugin FILE"
            )
        found.append(path)
    return found


def with_plugins(config: RunConfig, plugins: Sequence[Path]) -> RunConfig:
    """``config`` recording the plugin files a new run uses, so that later commands load them."""
    files = list(dict.fromkeys([*config.plugins, *(Path(p).resolve() for p in plugins)]))
    return config.model_copy(update={"plugins": files})


def train(
    config: str | Path | Mapping[str, Any] | RunConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    force: bool = False,
    plugins: Sequence[str | Path] = (),
    trust_plugins: bool = False,
    sets: Sequence[str] = (),
    console: Console | None = None,
    **overrides: Any,
) -> Run:
    """Train like ``genmod run``, with the same validation, outputs and resume.

    ``config`` is a registered model's name (its recipe), a YAML file, a mapping with the
    ``model``/``data``/``train`` sections, or a ``RunConfig``; or leave it out and pass
    ``resume=RUN_DIR``. Overrides are ``sets`` as ``--set`` spells them (``"train.lr=3e-4"``),
    then keywords spelling dotted keys with ``__``: ``train("mlp-vae", train__epochs=2,
    data__limit=1000)``. The progress and summary go to ``console`` (rich; default: the
    terminal). Returns the finished :class:`~genmod.runner.Run` (``.history``, ``.model``,
    ``.out_dir``, ``.config``). :func:`launch` trains in several processes.

    A resumed run imports the plugin files it remembers only if this user trained with them
    here and they are unchanged, or with ``trust_plugins=True`` (see :mod:`genmod.trust`).
    """
    from genmod.progress import RunReporter
    from genmod.runner import train as run_training

    found, run_config = _configure(config, resume, plugins, trust_plugins, sets, overrides)
    reporter = RunReporter(console)
    if os.environ.get("RANK", "0") == "0":
        for failure in found.failures:  # explicit ones have stopped already
            reporter.console.print(
                f"[yellow]warning:[/] installed plugin '{escape(failure.plugin.name)}' failed to load "
                f"and is left out: {escape(failure.error)}",
                highlight=False,
                soft_wrap=True,
            )
    out_dir = Path(resume) if resume is not None else (None if out is None else Path(out))
    return run_training(
        run_config, found, out_dir=out_dir, resume=resume is not None, force=force, reporter=reporter
    )


def _configure(
    config: str | Path | Mapping[str, Any] | RunConfig | None,
    resume: str | Path | None,
    plugins: Sequence[str | Path],
    trust_plugins: bool,
    sets: Sequence[str],
    overrides: Mapping[str, Any],
) -> tuple[Registry, RunConfig | Callable[[], RunConfig]]:
    """The registry and the validated config of :func:`train`'s arguments; for a resumed run
    in a process of a launch, a function that reads it (see :func:`genmod.runner.train`)."""
    files = [Path(p) for p in plugins]
    sets = [*sets, *_assignments(overrides)]
    run_dir = None if resume is None else Path(resume)
    found = registry(files, run=run_dir, trust_plugins=trust_plugins)
    if run_dir is not None:
        read = functools.partial(resolve_run_config, found, run_dir=run_dir, overrides=sets)
        # A process of a launch reads nothing itself: rank 0 reads the folder and hands the
        # config on, so that the other machines of a multi-node run need no copy of it.
        return found, read if "WORLD_SIZE" in os.environ else read()
    if isinstance(config, (RunConfig, Mapping)):
        run_config = _from_mapping(config.to_dict() if isinstance(config, RunConfig) else config, sets, found)
    elif config is not None and (Path(config).suffix in (".yaml", ".yml") or Path(config).is_file()):
        run_config = resolve_run_config(found, config_file=Path(config), overrides=sets)
    elif config is not None:
        run_config = resolve_run_config(found, model=str(config), overrides=sets)
    else:
        raise ConfigError("name a model, a config file or a mapping, or pass resume=RUN_DIR")
    # The run remembers its plugin files, so that eval, sample and --resume load them again.
    return found, with_plugins(run_config, files)


def _assignments(overrides: Mapping[str, Any]) -> list[str]:
    """Keyword overrides (``train__epochs=2``) as ``--set`` spells them (``train.epochs=2``)."""
    return [f"{key.replace('__', '.')}={json.dumps(value)}" for key, value in overrides.items()]


def launch(
    nproc: int, config: str | Path | Mapping[str, Any] | RunConfig | None = None, **options: Any
) -> None:
    """:func:`train` in ``nproc`` processes of one process group on this machine (distributed
    data parallel, as ``genmod run --nproc N``); ``config`` and ``options`` as for
    :func:`train`, but ``console`` (the first process prints to the terminal). The config is
    checked here before any process starts; the run folder holds the outcome, and the first
    error of a process is raised here, as that process raised it. Under ``torchrun`` (one
    process of a launch already) it trains in this process."""
    if nproc < 1:
        raise ConfigError(f"nproc = {nproc}: train in at least one process")
    if nproc == 1 or "WORLD_SIZE" in os.environ:
        train(config, **options)
        return
    if "console" in options:
        raise ConfigError("launch() takes no console: the first process prints to the terminal")
    named = ("out", "resume", "force", "plugins", "trust_plugins", "sets")
    call = {key: options.pop(key) for key in named if key in options}
    _, run_config = _configure(
        config,
        call.get("resume"),
        call.get("plugins", ()),
        call.get("trust_plugins", False),
        call.get("sets", ()),
        options,
    )
    if call.get("resume") is None:  # a new run: every process gets the config checked here
        from genmod.runner import default_out_dir

        assert not callable(run_config)
        call.update(config=run_config.to_dict(), sets=[])
        call["out"] = call.get("out") or default_out_dir(run_config.model.name)
    else:  # every process reads the run's own config, with the same overrides
        call["sets"] = [*call.get("sets", ()), *_assignments(options)]
    call = json.loads(json.dumps(call, default=str))  # paths as text, for the processes' argv
    _launch(call, nproc, Path(call.get("resume") or call["out"]))


_ERROR_FILE = "GENMOD_ERROR_FILE"
"""Where a process of :func:`launch` writes its error, for the launcher to raise."""


def _launch(call: dict[str, Any], nproc: int, out: Path) -> None:
    """``train(**call)`` in ``nproc`` processes of one process group training into ``out``;
    raises the error of the first process that failed (rank 0's where it failed), as that
    process raised it."""
    import tempfile

    from genmod.distributed import launch as start_processes

    with tempfile.TemporaryDirectory(prefix="genmod-launch-") as folder:
        errors = Path(folder)
        worker = (
            "import genmod.openmp as o; o.choose_wait_policy(o.announce_training()); "
            "from genmod.api import _train_in_process; _train_in_process()"
        )
        os.environ[_ERROR_FILE] = str(errors)
        try:
            code = start_processes([sys.executable, "-c", worker, json.dumps(call)], nproc)
        except KeyboardInterrupt:
            code = 130  # the launch has stopped the processes; each saved its checkpoint
        finally:
            del os.environ[_ERROR_FILE]
        if code == 0:
            return
        written = sorted(errors.glob("rank-*.json"), key=lambda f: int(f.stem.split("-")[1]))
        error = json.loads(written[0].read_text()) if written else None
    from genmod.runner import Interrupted

    if error is None and code == Interrupted.exit_code:
        # The processes of a launch stop at once (they could not agree on a step to stop at).
        raise Interrupted(
            f"stopped; training up to the last completed epoch is saved. Continue with:\n"
            f"  genmod run --resume {out} --nproc {nproc}"
        )
    if error is None:
        raise GenmodError(f"a training process failed (exit code {code}); its traceback is above")

    kind = Interrupted if error["exit_code"] == Interrupted.exit_code else GenmodError
    raised = kind(error["message"])
    raised.exit_code = error["exit_code"]
    raise raised


def _train_in_process() -> None:
    """One process of :func:`launch`: the launcher's call to :func:`train`, its error written
    where the launcher reads it. A process that fails because another failed first (its peer
    gone) exits quietly: the first error is the one to show."""
    call = json.loads(sys.argv[1])
    errors = Path(os.environ[_ERROR_FILE])
    try:
        train(**call)
    except KeyboardInterrupt:
        sys.exit(130)  # the launcher says what was kept
    except GenmodError as exc:
        report = {"message": str(exc), "exit_code": exc.exit_code}
        (errors / f"rank-{os.environ.get('RANK', '0')}.json").write_text(json.dumps(report))
        sys.exit(exc.exit_code)
    except Exception:
        if any(errors.glob("rank-*.json")):
            sys.exit(1)
        raise


def _from_mapping(raw: Mapping[str, Any], sets: Sequence[str], found: Registry) -> RunConfig:
    config = json.loads(json.dumps(dict(raw), default=str))  # a deep copy with plain values
    for assignment in in_order(sets):
        apply_override(config, assignment)
    return validate_run_config(config, found)


def load(
    run: str | Path,
    checkpoint: str | None = None,
    *,
    device: str = "cpu",
    plugins: Sequence[str | Path] = (),
    trust_plugins: bool = False,
) -> GenerativeModel:
    """A trained model from a run folder (or a shipped ``pretrained/NAME``), in eval mode:
    ``sample(n)``, ``reconstruct(x)``, ``log_importance_weights(x, k)``. ``checkpoint`` is
    ``"best"``, ``"last"`` or ``None`` (the best where the run kept one). The run's remembered
    plugin files are imported only if trusted, or with ``trust_plugins=True``. :func:`open_run`
    gives the model with its config, epoch and data."""
    from genmod.trained import open_run

    return open_run(run, checkpoint, device=device, plugins=plugins, trust_plugins=trust_plugins).model


def export(
    run: str | Path,
    out: str | Path | None = None,
    *,
    checkpoint: str | None = None,
    plugins: Sequence[str | Path] = (),
    trust_plugins: bool = False,
) -> Path:
    """Write a run's weights (``checkpoint`` as in :func:`load`) and resolved config as one
    safetensors file, ``RUN_DIR/model.safetensors`` by default (``genmod export``); returns its
    path. :func:`load`, ``genmod eval``, ``sample`` and ``reconstruct`` accept the file.

    The file names no plugin files, so opening it never imports one: it records the installed
    plugin that registers the model (name and version), for the error where that is missing.
    A run naming plugin files that are not trusted is refused as by :func:`load` (none is
    imported to export).
    """
    from genmod.checkpoint import export_safetensors
    from genmod.runner import run_weights

    run_dir = Path(run)
    path = Path(out) if out is not None else run_dir / f"model{EXPORTED_SUFFIX}"
    if path.suffix != EXPORTED_SUFFIX:
        raise ConfigError(f"the exported file must end in {EXPORTED_SUFFIX}: {path}")
    plugin_files(run_dir, [Path(p) for p in plugins], trust_plugins=trust_plugins)
    config = {**read_run_config(run_dir), "plugins": []}
    weights = run_weights(run_dir, config["model"]["name"], checkpoint)
    export_safetensors(path, weights, config, _model_distribution(str(config["model"]["name"])))
    return path


def _model_distribution(model: str) -> dict[str, str]:
    """``{distribution: version}`` of the installed plugin that registers ``model`` ({} if a
    plugin file does, or none): installed distributions only, so no file is imported."""
    try:
        plugin = load_registry().get("model", model).plugin
    except GenmodError:
        return {}
    return {} if plugin.version == "file" else {plugin.name: plugin.version}


def dataset(
    run: str | Path,
    *,
    root: str | Path | None = None,
    plugins: Sequence[str | Path] = (),
    trust_plugins: bool = False,
) -> Data:
    """The images a run was trained and tested on (its config's ``data`` section), on the CPU,
    as float in [0, 1]; ``root`` reads them from another folder."""
    from genmod.data import load_data

    run_dir = Path(run)
    found = registry(plugins, run=run_dir, trust_plugins=trust_plugins)
    config = resolve_run_config(found, run_dir=run_dir)
    data_config = config.data.model_copy(update={"root": Path(root)} if root else {})
    return load_data(found.dataset(data_config.name), data_config, torch.device("cpu")).as_float()


def evaluate(
    model_or_run: GenerativeModel | str | Path,
    k: int = 5000,
    *,
    images: torch.Tensor | None = None,
    limit: int | None = None,
    split: str = "test",
    checkpoint: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    precision: Precision = "auto",
    compile: Compile = "auto",
    plugins: Sequence[str | Path] = (),
    trust_plugins: bool = False,
    data_dir: str | Path | None = None,
    output: str | Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> NLLResult:
    """The likelihood as the model offers it (``genmod eval``): an importance-sampled NLL with
    ``k`` samples per image and the -ELBO, an exact NLL, or the model's evaluation bound;
    :attr:`NLLResult.quantity` says which.

    Pass a run folder or a model with ``images``. For a run folder, ``split`` (test, validation
    or train) of its dataset is evaluated, and the report is written as ``genmod eval`` writes
    it: to its ``eval.json``, beside it when that holds an evaluation of another quantity, k,
    image count or split, or to ``output`` (:attr:`NLLResult.report` says where); not with
    ``images`` of your own. ``limit`` evaluates the first images only; ``checkpoint`` and
    ``device`` are as in :func:`load`, ``precision`` and ``compile`` as in ``genmod eval``;
    ``plugins`` and ``trust_plugins`` as in :func:`load`; ``data_dir`` reads the run's dataset
    from another folder. ``on_progress(images_done, images)`` is called after each batch.
    """
    from dataclasses import replace

    from genmod import artifacts
    from genmod.evaluation import evaluable, evaluate_likelihood, no_likelihood
    from genmod.trained import open_run

    _check_precision(precision)
    if not 1 <= k <= MAX_K:
        raise ConfigError(f"k = {k} is out of range: use 1 to {MAX_K:,} importance samples per image")
    if split not in ("test", "validation", "train"):
        raise ConfigError(f"split must be test, validation or train, not '{split}'")
    opened = None
    if isinstance(model_or_run, (str, Path)):
        opened = open_run(
            model_or_run, checkpoint, device=device, plugins=plugins, trust_plugins=trust_plugins
        )
        model, name = opened.model, opened.name
    else:
        model, name = model_or_run, type(model_or_run).__name__
        if images is None:
            raise ConfigError("evaluate(model, ...) needs images=; or pass a run folder")
    if not evaluable(model):
        raise ConfigError(f"model '{name}': {no_likelihood(model)}")
    report_to = None
    if images is None:
        assert opened is not None
        images = _split(opened, split, data_dir, next(model.parameters()).device)
        report_to = opened
    torch.manual_seed(seed)
    images = images[:limit]
    total = len(images)
    result = evaluate_likelihood(
        model,
        images,
        k,
        (lambda done: on_progress(done, total)) if on_progress else lambda done: None,
        precision=precision,
        compile=compile,
        batch=opened.config.train.eval_batch_size if opened is not None else EVAL_BATCH_SIZE,
    )
    if report_to is None:
        return result
    report = artifacts.evaluation_report(result, name, report_to.epoch, report_to.run_id, split, seed)
    path = Path(output) if output is not None else artifacts.evaluation_path(report_to.path, report)[0]
    try:
        artifacts.write_evaluation(report, path)
    except GenmodError as exc:
        # The figures are in the message: an evaluation of hours is never lost to a full disk.
        raise GenmodError(
            f"{result.label} {result.nll:.4f} ± {result.nll_se:.4f} was not saved: {exc}"
        ) from None
    return replace(result, report=path)


def _check_precision(precision: str) -> None:
    if precision not in get_args(Precision):
        raise ConfigError(f"precision must be one of {', '.join(get_args(Precision))}, not '{precision}'")


def sample_quality(
    run: str | Path,
    metrics: Sequence[str | ComponentRef] = ("fid", "kid", "precision-recall"),
    *,
    samples: int = 10_000,
    split: str = "test",
    features: str = "auto",
    features_weights: str | Path | None = None,
    checkpoint: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    precision: Precision = "fp32",
    options: Mapping[str, Any] | None = None,
    plugins: Sequence[str | Path] = (),
    trust_plugins: bool = False,
    data_dir: str | Path | None = None,
    output: str | Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[SampleQuality]:
    """Sample-quality metrics of a run (``genmod eval --metric``): ``samples`` images drawn
    from the model, compared with ``split`` of its dataset as training saw it (binarized where
    training binarized) through the feature network ``features`` (``auto``: the dataset's
    classifier genmod ships, else MNIST's for 1x28x28 images, else Inception-v3 read from
    ``features_weights`` or the features folder). Each metric is a registered evaluator, by
    name or as a ``ComponentRef`` with its options (``ComponentRef(name="kid", subsets=50)``).

    The figures are added to the run's ``eval.json`` (or ``output``) under ``sample_quality``,
    each with how it was computed. The samples are drawn with the layers in ``precision``
    (``auto``, ``fp32``, ``bf16`` or ``fp16``, as in ``genmod eval``); float32 by default, as
    training draws those of ``train.sample_metrics``; ``options`` are the model's sampling
    options, as ``genmod sample --option`` takes them (``{"temperature": 0.7}``).
    ``on_progress(samples_done, samples)`` is called after each batch of samples.
    """
    from dataclasses import replace

    from genmod import artifacts
    from genmod.precision import autocast_dtype
    from genmod.quality import SampleMetrics
    from genmod.trained import open_run

    _check_precision(precision)
    if split not in ("test", "validation", "train"):
        raise ConfigError(f"split must be test, validation or train, not '{split}'")
    if samples < 2:
        raise ConfigError(f"--samples {samples}: the metrics need at least 2 samples")
    if not metrics:
        raise ConfigError("name at least one metric (genmod list --kind evaluator)")
    opened = open_run(run, checkpoint, device=device, plugins=plugins, trust_plugins=trust_plugins)
    config, model = opened.config, opened.model
    sampling = opened.sampling_options(options or {})  # checked before any sample is drawn
    on = next(model.parameters()).device
    scorer = SampleMetrics(
        opened.registry,
        [ComponentRef(name=m) if isinstance(m, str) else m for m in metrics],
        _split(opened, split, data_dir, torch.device("cpu")),
        f"{split} split of {config.data.name}",
        config.data.name,
        features,
        Path(features_weights) if features_weights else None,
        on,
        batch=max(1, config.train.eval_batch_size // model.evaluation_cost),
        dtype=autocast_dtype(precision, on),
    )
    torch.manual_seed(seed)
    results = scorer.evaluate(
        model,
        samples,
        (lambda done: on_progress(done, samples)) if on_progress else lambda done: None,
        sampling,
    )
    figures = {
        r.metric: {**r.to_dict(), "epoch": opened.epoch, "seed": seed, "run": opened.run_id} for r in results
    }
    path = Path(output) if output is not None else artifacts.beside(opened.path, artifacts.EVAL)
    try:
        artifacts.add_sample_quality(path, figures)
    except GenmodError as exc:
        shown = "; ".join(f"{k} {v:.4g}" for r in results for k, v in r.figures.items())
        raise GenmodError(f"{shown} was not saved: {exc}") from None
    return [replace(r, report=path) for r in results]


def _split(opened: TrainedRun, split: str, data_dir: str | Path | None, device: torch.device) -> torch.Tensor:
    """The images of ``split`` a run was trained or tested on, as training saw them (binarized
    once where training binarized each batch), on ``device``."""
    from genmod.data import binarize_once
    from genmod.streaming import StreamingImages

    data = opened.data(data_dir, device)
    if split == "validation" and data.validation is None:
        raise ConfigError(f"{opened.path} was trained without data.validation: use --split test or train")
    chosen = {"test": data.test, "validation": data.validation, "train": data.train}[split]
    if isinstance(chosen, StreamingImages):
        raise ConfigError("--split train of a streamed dataset is not evaluated: use --split test")
    assert chosen is not None
    return binarize_once(chosen) if split == "train" and data.dynamic_binarization else chosen
