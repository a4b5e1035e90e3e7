"""Turning YAML files, ``--set key=value`` overrides and CLI flags into a validated RunConfig.

Every mistake becomes a one-line :class:`ConfigError` naming the dotted key, before any
data is read or any folder written.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError, create_model
from pydantic_core import to_jsonable_python

from genmod.artifacts import CONFIG, load_yaml
from genmod.checkpoint import EXPORTED_SUFFIX, read_exported_config
from genmod.config import ComponentRef, RunConfig
from genmod.data import DATA_DIR_ENV
from genmod.errors import ConfigError
from genmod.plugins import Registry


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file {path}{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of sections (model, data, train)")
    return data


def apply_override(
    config: dict[str, Any], assignment: str, defaults: Mapping[str, Any] | None = None
) -> None:
    """Apply one ``dotted.key=value``; the value is parsed as YAML (``10``, ``3e-4``, ``[1, 2]``).

    ``defaults`` holds the model section's defaults: setting an option of a component the
    config does not name (``model.decoder.hidden_dims``) starts from the component the model's
    config class names by default, as if the recipe had spelled it out.
    """
    key, sep, raw_value = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE (e.g. train.lr=3e-4), got '{assignment}'")
    try:
        value = yaml.safe_load(raw_value)
    except yaml.YAMLError:
        value = raw_value
    parts = key.strip().split(".")
    node = config
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None and depth == 1 and parts[0] == "model" and defaults:
            child = defaults.get(part)
        if isinstance(child, str):  # a component named by a bare string gains options
            child = {"name": child}
        elif child is None:
            child = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"--set {key}: '{'.'.join(parts[: depth + 1])}' is a value, not a section")
        node[part] = child
        node = child
    node[parts[-1]] = value


def in_order(overrides: Sequence[str]) -> list[str]:
    """Overrides sections first: ``model.prior=mixture`` before ``model.prior.components=5``,
    whatever order they were given in, so that choosing a component never drops the options
    given for it (a stable sort: keys of one depth keep their order, the last one wins)."""
    return sorted(overrides, key=lambda assignment: assignment.partition("=")[0].count("."))


def _field_names(schema: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """The keys allowed in the section at ``loc`` of ``schema``."""
    cls: Any = schema
    for part in loc:
        field = getattr(cls, "model_fields", {}).get(part)
        cls = field.annotation if field is not None else None
    return list(getattr(cls, "model_fields", {}))


def _key_in_a_section(schema: type[BaseModel], name: str) -> str | None:
    """``section.key`` for the key closest to ``name`` in any section (``latent_dim`` ->
    ``model.latent_dim``)."""
    keys = {
        f"{section}.{key}": key
        for section in _field_names(schema, [])
        for key in _field_names(schema, [section])
    }
    close = difflib.get_close_matches(name, list(keys.values()), n=1)
    return next((full for full, key in keys.items() if close and key == close[0]), None)


def _describe(error: Mapping[str, Any], schema: type[BaseModel], prefix: str = "") -> str:
    loc = [str(p) for p in error["loc"]]
    if not loc:  # a check across sections: its message names the keys
        return str(error["msg"]).removeprefix("Value error, ")
    full = [prefix, *loc] if prefix else loc
    key = ".".join(full) or "config"
    if error["type"] == "extra_forbidden":
        allowed = _field_names(schema, loc[:-1])
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        if close:
            hint = f"did you mean '{'.'.join([*full[:-1], close[0]])}'?"
        elif len(full) == 1 and (found := _key_in_a_section(schema, loc[-1])):
            hint = f"did you mean '{found}'?"  # a key written without its section
        else:
            hint = f"allowed: {', '.join(allowed) or 'none'}"
        return f"unknown config key '{key}': {hint}"
    if error["type"] == "missing":
        return f"config key '{key}' is required"
    value = error.get("input")
    shown = "" if isinstance(value, (dict, list)) else f" = {value!r}"
    return f"config key '{key}'{shown}: {error['msg'].removeprefix('Value error, ')}"


def validate_run_config(raw: dict[str, Any], registry: Registry) -> RunConfig:
    """Validate a whole run config, the ``model`` section against its model's own class."""
    model_section = raw.get("model")
    if not isinstance(model_section, dict) or not model_section.get("name"):
        raise ConfigError("config key 'model.name' is required: name a registered model (see 'genmod list')")
    spec = registry.model(str(model_section["name"]))
    schema = create_model(f"{spec.config.__name__}Run", __base__=RunConfig, model=(spec.config, ...))
    try:
        config = schema.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(
            "invalid config: " + "; ".join(_describe(e, schema) for e in exc.errors())
        ) from None
    _check_components(config, registry)
    return config


def _check_components(config: RunConfig, registry: Registry) -> None:
    """Validate every component the model config names, before any work is done."""
    kinds = {kind.name for kind in registry.component_kinds()}
    for field, value in config.model:
        if isinstance(value, ComponentRef) and field in kinds:
            try:
                registry.component_options(field, value)
            except ValidationError as exc:
                options = registry.get(field, value.name).spec.options
                problems = [_describe(e, options, prefix=f"model.{field}") for e in exc.errors()]
                raise ConfigError(
                    f"invalid config ({field} '{value.name}'): " + "; ".join(problems)
                ) from None


def check_run_dir(run_dir: Path) -> None:
    """Refuse a path that is not a run folder, saying which of the two it is."""
    if not run_dir.exists():
        raise ConfigError(f"run folder {run_dir} does not exist (see 'genmod runs')")
    if run_dir.is_file():
        hint = (
            f"to train from a config file: genmod run --config {run_dir}"
            if run_dir.suffix in (".yaml", ".yml")
            else f"pass a run folder or a file from 'genmod export' ({EXPORTED_SUFFIX})"
        )
        raise ConfigError(f"{run_dir} is a file, not a run folder: {hint}")
    if not (run_dir / CONFIG).is_file():
        raise ConfigError(f"{run_dir} is not a genmod run folder: it has no {CONFIG} (see 'genmod runs')")


def read_run_config(run: Path) -> dict[str, Any]:
    """The saved config of a run folder, or of a weights file ``genmod export`` wrote."""
    if run.suffix == EXPORTED_SUFFIX and run.is_file():
        return read_exported_config(run)
    check_run_dir(run)
    return read_yaml(run / CONFIG)


def resolve_run_config(
    registry: Registry,
    *,
    model: str | None = None,
    config_file: Path | None = None,
    run_dir: Path | None = None,
    overrides: Sequence[str] = (),
) -> RunConfig:
    """The run config from a model's shipped recipe, a YAML file or an earlier run's folder,
    with overrides applied."""
    if run_dir is not None:
        raw = _data_found_here(read_run_config(run_dir))
    elif config_file is not None:
        raw = read_yaml(config_file)
        if model is not None and raw.get("model", {}).get("name") not in (None, model):
            raise ConfigError(
                f"{config_file} configures model '{raw['model']['name']}', not '{model}': drop one of the two"
            )
    elif model is not None:
        spec = registry.model(model)
        raw = read_yaml(spec.recipe) if spec.recipe else {}
    else:
        raise ConfigError("name a model (genmod run mlp-vae) or a config file (--config FILE)")
    if model is not None:
        raw.setdefault("model", {})["name"] = model
    defaults = _model_defaults(raw, registry) if overrides else None
    for assignment in in_order(overrides):
        apply_override(raw, assignment, defaults)
    return validate_run_config(raw, registry)


def _data_found_here(raw: dict[str, Any]) -> dict[str, Any]:
    """A saved run's config with ``data.root`` replaced by ``$GENMOD_DATA_DIR`` where the saved
    folder does not exist here (a run trained on another machine, or data moved since)."""
    data = raw.get("data")
    if isinstance(data, dict) and data.get("root") and os.environ.get(DATA_DIR_ENV):
        if not Path(str(data["root"])).exists():
            return {**raw, "data": {**data, "root": os.environ[DATA_DIR_ENV]}}
    return raw


def _model_defaults(raw: Mapping[str, Any], registry: Registry) -> dict[str, Any]:
    """The defaults of the model section's config class, as YAML would spell them."""
    section = raw.get("model")
    if not isinstance(section, dict) or not section.get("name"):
        return {}
    fields = registry.model(str(section["name"])).config.model_fields
    return {
        key: to_jsonable_python(field.get_default(call_default_factory=True))
        for key, field in fields.items()
        if not field.is_required()
    }
