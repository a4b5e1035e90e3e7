"""Plugin discovery and the registry of everything plugins provide.

Plugins are found through the ``genmod`` entry-point group, genmod's own built-ins
included, and loaded with pluggy. A plugin that fails to import or whose hook raises is
recorded as a failure instead of breaking the CLI; two plugins registering the same name is
an error naming both.
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import pluggy
from pydantic import ValidationError
from torch import nn

from genmod import hookspecs
from genmod.components import Decoder, Encoder, Likelihood, Prior
from genmod.config import ComponentRef
from genmod.errors import ConfigError, PluginError, UnknownNameError
from genmod.specs import ComponentContext, ComponentSpec, DatasetSpec, ModelSpec

Kind = Literal["model", "encoder", "decoder", "prior", "likelihood", "dataset"]
KINDS: tuple[Kind, ...] = ("model", "encoder", "decoder", "prior", "likelihood", "dataset")
_HOOKS: dict[Kind, str] = {
    "model": "register_models",
    "encoder": "register_encoders",
    "decoder": "register_decoders",
    "prior": "register_priors",
    "likelihood": "register_likelihoods",
    "dataset": "register_datasets",
}
_SPEC_TYPES: dict[Kind, type] = {
    "model": ModelSpec,
    "encoder": ComponentSpec,
    "decoder": ComponentSpec,
    "prior": ComponentSpec,
    "likelihood": ComponentSpec,
    "dataset": DatasetSpec,
}
COMPONENT_KINDS: tuple[Kind, ...] = ("encoder", "decoder", "prior", "likelihood")
_COMPONENT_TYPES: dict[str, type[nn.Module]] = {
    "encoder": Encoder,
    "decoder": Decoder,
    "prior": Prior,
    "likelihood": Likelihood,
}


@dataclass(frozen=True)
class PluginInfo:
    """Where a registration came from: the plugin and the distribution that installed it."""

    name: str
    distribution: str
    version: str


@dataclass(frozen=True)
class Entry:
    kind: Kind
    name: str
    spec: Any
    plugin: PluginInfo

    @property
    def description(self) -> str:
        return self.spec.description


@dataclass(frozen=True)
class PluginFailure:
    plugin: PluginInfo
    error: str


class Registry:
    """Everything the loaded plugins registered, by kind and name."""

    def __init__(self) -> None:
        self._entries: dict[Kind, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.plugins: list[PluginInfo] = []
        self.failures: list[PluginFailure] = []

    def add(self, entry: Entry) -> None:
        existing = self._entries[entry.kind].get(entry.name)
        if existing is not None:
            raise PluginError(
                f"{entry.kind} '{entry.name}' is registered by both plugin "
                f"'{existing.plugin.name}' ({existing.plugin.distribution}) and plugin "
                f"'{entry.plugin.name}' ({entry.plugin.distribution}); uninstall or rename one"
            )
        self._entries[entry.kind][entry.name] = entry

    def entries(self, kind: Kind | None = None) -> list[Entry]:
        kinds = KINDS if kind is None else (kind,)
        return [self._entries[k][n] for k in kinds for n in sorted(self._entries[k])]

    def get(self, kind: Kind, name: str) -> Entry:
        table = self._entries[kind]
        if name in table:
            return table[name]
        close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
        hint = (
            f"did you mean {', '.join(repr(c) for c in close)}?"
            if close
            else (f"available: {', '.join(sorted(table)) or 'none'}")
        )
        broken = ", ".join(f"'{f.plugin.distribution}'" for f in self.failures)
        note = f"; plugin {broken} failed to load and may provide it" if broken else ""
        raise UnknownNameError(f"unknown {kind} '{name}': {hint} (see 'genmod list'){note}")

    def model(self, name: str) -> ModelSpec:
        return self.get("model", name).spec

    def dataset(self, name: str) -> DatasetSpec:
        return self.get("dataset", name).spec

    def component_options(self, kind: Kind, ref: ComponentRef) -> Any:
        """``ref``'s options validated by the component's own config class.

        Raises pydantic's ``ValidationError``; callers name the config key it belongs to.
        """
        return self.get(kind, ref.name).spec.config.model_validate(ref.options)

    def build_component(self, kind: Kind, ref: ComponentRef, context: ComponentContext) -> nn.Module:
        """Build the component ``ref`` names, refusing one that does not honour its interface."""
        entry = self.get(kind, ref.name)
        try:
            options = self.component_options(kind, ref)
        except ValidationError as exc:
            raise ConfigError(f"{kind} '{ref.name}': {exc.errors()[0]['msg']}") from None
        try:
            module = entry.spec.factory(options, context)
        except Exception as exc:  # noqa: BLE001 - plugin code: report it, with where it came from
            raise PluginError(
                f"plugin '{entry.plugin.name}' ({entry.plugin.distribution}): {kind} '{ref.name}' "
                f"could not be built: {type(exc).__name__}: {exc}"
            ) from None
        expected = _COMPONENT_TYPES[kind]
        if not isinstance(module, expected):
            raise PluginError(
                f"plugin '{entry.plugin.name}' ({entry.plugin.distribution}): {kind} '{ref.name}' built a "
                f"{type(module).__name__}, not a genmod.{expected.__name__} subclass"
            )
        return module


def _load_file_plugin(path: Path) -> ModuleType:
    if not path.is_file():
        raise PluginError(f"plugin file not found: {path}")
    module_name = f"genmod_local_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot import plugin file {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _discover(extra_files: Sequence[Path]) -> Iterable[tuple[PluginInfo, Callable[[], object]]]:
    for ep in entry_points(group=hookspecs.PROJECT):
        dist = ep.dist
        info = PluginInfo(ep.name, dist.name if dist else "?", dist.version if dist else "?")
        yield info, ep.load
    for path in extra_files:
        yield PluginInfo(Path(path).stem, str(path), "local"), lambda p=Path(path): _load_file_plugin(p)


def load_registry(plugin_files: Sequence[Path] = ()) -> Registry:
    """Import every installed plugin (and ``plugin_files``) and collect their registrations."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    registry = Registry()
    for info, load in _discover(plugin_files):
        try:
            module = load()
            manager.register(module, name=info.name)
        except Exception as exc:  # noqa: BLE001 - any plugin bug must not break the CLI
            registry.failures.append(PluginFailure(info, f"{type(exc).__name__}: {exc}"))
            continue
        staged: list[Entry] = []
        try:
            for kind in KINDS:
                _collect(manager, module, kind, info, staged)
        except Exception as exc:  # noqa: BLE001
            manager.unregister(module)
            registry.failures.append(PluginFailure(info, f"{type(exc).__name__}: {exc}"))
            continue
        registry.plugins.append(info)
        for entry in staged:
            registry.add(entry)
    return registry


def _collect(
    manager: pluggy.PluginManager, module: object, kind: Kind, info: PluginInfo, staged: list[Entry]
) -> None:
    """Call ``module``'s implementation of ``kind``'s hook, staging what it registers."""
    expected = _SPEC_TYPES[kind]

    def register(spec: object) -> None:
        if not isinstance(spec, expected):
            raise PluginError(
                f"{_HOOKS[kind]} registered a {type(spec).__name__}; expected genmod.{expected.__name__}"
            )
        staged.append(Entry(kind, spec.name, spec, info))  # type: ignore[attr-defined]

    for impl in getattr(manager.hook, _HOOKS[kind]).get_hookimpls():
        if impl.plugin is module:
            impl.function(**({"register": register} if "register" in impl.argnames else {}))
