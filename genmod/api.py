"""genmod from Python: train, load, evaluate, and the registry, for notebooks and scripts.

The command line is a thin layer over these functions: ``genmod run`` is :func:`train`,
``genmod eval`` is :func:`evaluate`, ``sample`` and ``reconstruct`` start from :func:`load`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from genmod.config import Compile, Precision, RunConfig
from genmod.config_loader import apply_override, read_run_config, resolve_run_config, validate_run_config
from genmod.errors import ConfigError, GenmodError
from genmod.plugins import Registry, load_registry

if TYPE_CHECKING:
    from genmod.data import Data
    from genmod.evaluation import NLLResult
    from genmod.model import GenerativeModel
    from genmod.runner import Run


def registry(plugins: Sequence[str | Path] = ()) -> Registry:
    """Every installed plugin's models, components and datasets, plus the plugin files in
    ``plugins`` (which must load). ``registry().entries("prior")`` lists the priors;
    ``registry().build_component("prior", ComponentRef(name="mixture"), context)`` builds one."""
    loaded = load_registry([Path(p) for p in plugins])
    loaded.check_explicit_plugins()
    return loaded


def saved_plugins(run_dir: Path, given: Sequence[Path] = ()) -> list[Path]:
    """The plugin files a run was trained with (its config's ``plugins``), to load again.

    A file passed again is not loaded twice; a file that is gone is an error unless other
    plugin files were given, which then stand in for it.
    """
    try:
        saved = read_run_config(run_dir).get("plugins") or []
    except (GenmodError, OSError, yaml.YAMLError, AttributeError):
        return []  # not a run folder: the caller says so in its own words
    names = {Path(p).resolve() for p in given}
    found = []
    for path in map(Path, saved):
        if path.resolve() in names:
            continue
        if path.is_file():
            found.append(path)
        elif not given:
            raise ConfigError(
                f"{run_dir} was trained with the plugin file {path}, which no longer exists: "
                "pass its new place with --plugin FILE"
            )
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
    **overrides: Any,
) -> Run:
    """Train like ``genmod run``, with the same validation, outputs and resume.

    ``config`` is a registered model's name (its recipe), a YAML file, a mapping with the
    ``model``/``data``/``train`` sections, or a ``RunConfig``; or leave it out and pass
    ``resume=RUN_DIR``. Keyword overrides spell dotted keys with ``__``:
    ``train("mlp-vae", train__epochs=2, data__limit=1000)``. Returns the finished
    :class:`~genmod.runner.Run` (``.history``, ``.model``, ``.out_dir``, ``.config``).
    """
    from genmod.runner import train as run_training

    files = [Path(p) for p in plugins]
    sets = [f"{key.replace('__', '.')}={json.dumps(value)}" for key, value in overrides.items()]
    if resume is not None:
        run_dir = Path(resume)
        found = registry([*files, *saved_plugins(run_dir, files)])
        run_config = resolve_run_config(found, run_dir=run_dir, overrides=sets)
        return run_training(run_config, found, out_dir=run_dir, resume=True)
    found = registry(files)
    if isinstance(config, (RunConfig, Mapping)):
        run_config = _from_mapping(config.to_dict() if isinstance(config, RunConfig) else config, sets, found)
    elif config is not None and (Path(config).suffix in (".yaml", ".yml") or Path(config).is_file()):
        run_config = resolve_run_config(found, config_file=Path(config), overrides=sets)
    elif config is not None:
        run_config = resolve_run_config(found, model=str(config), overrides=sets)
    else:
        raise ConfigError("name a model, a config file or a mapping, or pass resume=RUN_DIR")
    run_config = with_plugins(run_config, files)
    return run_training(run_config, found, out_dir=None if out is None else Path(out), force=force)


def _from_mapping(raw: Mapping[str, Any], sets: Sequence[str], found: Registry) -> RunConfig:
    config = json.loads(json.dumps(dict(raw), default=str))  # a deep copy with plain values
    for assignment in sets:
        apply_override(config, assignment)
    return validate_run_config(config, found)


def load(
    run: str | Path,
    checkpoint: str | None = None,
    *,
    device: str = "cpu",
    plugins: Sequence[str | Path] = (),
) -> GenerativeModel:
    """A trained model from a run folder (or a shipped ``pretrained/NAME``), in eval mode:
    ``sample(n)``, ``reconstruct(x)``, ``log_importance_weights(x, k)``. ``checkpoint`` is
    ``"best"``, ``"last"`` or ``None`` (the best where the run kept one)."""
    return _load(Path(run), checkpoint, device, plugins)[2]


def _load(
    run_dir: Path, checkpoint: str | None, device: str, plugins: Sequence[str | Path]
) -> tuple[Registry, RunConfig, GenerativeModel, int]:
    from genmod.runner import load_trained, select_device

    files = [Path(p) for p in plugins]
    found = registry([*files, *saved_plugins(run_dir, files)])
    config, model, epoch = load_trained(run_dir, found, select_device(device), checkpoint)
    return found, config, model, epoch


def export(run: str | Path, out: str | Path | None = None, *, checkpoint: str | None = None) -> Path:
    """Write a run's weights (``checkpoint`` as in :func:`load`) and resolved config as one
    safetensors file, ``RUN_DIR/model.safetensors`` by default (``genmod export``); returns its
    path. :func:`load`, ``genmod eval``, ``sample`` and ``reconstruct`` accept the file."""
    from genmod.checkpoint import EXPORTED_SUFFIX, export_safetensors
    from genmod.runner import run_weights

    run_dir = Path(run)
    path = Path(out) if out is not None else run_dir / f"model{EXPORTED_SUFFIX}"
    if path.suffix != EXPORTED_SUFFIX:
        raise ConfigError(f"the exported file must end in {EXPORTED_SUFFIX}: {path}")
    config = read_run_config(run_dir)
    export_safetensors(path, run_weights(run_dir, config["model"]["name"], checkpoint), config)
    return path


def dataset(run: str | Path, *, root: str | Path | None = None, plugins: Sequence[str | Path] = ()) -> Data:
    """The images a run was trained and tested on (its config's ``data`` section), on the CPU,
    as float in [0, 1]; ``root`` reads them from another folder."""
    from genmod.data import load_data

    run_dir = Path(run)
    files = [Path(p) for p in plugins]
    found = registry([*files, *saved_plugins(run_dir, files)])
    config = resolve_run_config(found, run_dir=run_dir)
    data_config = config.data.model_copy(update={"root": Path(root)} if root else {})
    return load_data(found.dataset(data_config.name), data_config, torch.device("cpu")).as_float()


def evaluate(
    model_or_run: GenerativeModel | str | Path,
    k: int = 5000,
    *,
    images: torch.Tensor | None = None,
    limit: int | None = None,
    seed: int = 0,
    precision: Precision = "auto",
    compile: Compile = "auto",
) -> NLLResult:
    """The importance-sampled NLL and -ELBO per image (``genmod eval``).

    Pass a run folder (its test set is used) or a model with ``images``. ``limit`` evaluates
    the first images only; ``precision`` and ``compile`` are as in ``genmod eval``.
    """
    from genmod.evaluation import importance_sampled_nll

    if isinstance(model_or_run, (str, Path)):
        model = load(model_or_run)
        images = dataset(model_or_run).test if images is None else images
    else:
        model = model_or_run
        if images is None:
            raise ConfigError("evaluate(model, ...) needs images=; or pass a run folder")
    if not model.can("log_importance_weights"):
        raise ConfigError(f"{type(model).__name__} does not implement log_importance_weights()")
    torch.manual_seed(seed)
    return importance_sampled_nll(model, images[:limit], k, precision=precision, compile=compile)
