"""Plugin discovery and the registry of everything plugins provide.

Plugins are found through the ``genmod`` entry-point group (genmod's own built-ins included)
and in files passed with ``--plugin`` or ``$GENMOD_PLUGINS``, registered with pluggy, and
checked the way pytest checks its plugins: an implementation of a hook that does not exist, or
with parameters the hook does not pass, is a failure of that plugin. Each kind's hook is then
called once through pluggy, so ``tryfirst``/``trylast`` and hook wrappers work.

One broken plugin never breaks the others: a plugin that fails to import or whose hook raises
is recorded as a failure and everything it registered is dropped. The kinds model families
declare (``register_kinds``) are collected first, so that their hooks are checked and called
like genmod's own. Two plugins registering one
name make that name a conflict that is an error only when it is used; an explicit plugin file
deliberately overrides a name an installed plugin registers.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import inspect
import sys
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import FrameType, ModuleType, TracebackType
from typing import Any

import pluggy
from pydantic import ValidationError
from torch import nn

from genmod import hookspecs
from genmod.config import ComponentRef
from genmod.errors import ConfigError, GenmodError, PluginError, UnknownNameError, one_line
from genmod.evaluators import Evaluator
from genmod.kinds import AFTER_COMPONENTS, KIND, MODEL, Kind
from genmod.loggers import Logger
from genmod.specs import DatasetSpec, KindSpec, ModelSpec


@dataclass(frozen=True, kw_only=True)
class PluginInfo:
    """A plugin as users see it: ``name`` is its one identity in every table and message."""

    name: str
    """The distribution that installed it (``genmod-zoo``), or the file passed with --plugin."""
    version: str
    """The distribution's version, or ``file``."""
    explicit: bool = False
    """Asked for by the user (--plugin, $GENMOD_PLUGINS): then it must load."""
    key: str = ""
    """The name it is registered under with pluggy (unique even if a distribution has several)."""


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    spec: Any
    plugin: PluginInfo

    @property
    def description(self) -> str:
        return str(self.spec.description)


@dataclass(frozen=True)
class PluginFailure:
    plugin: PluginInfo
    error: str


@dataclass(frozen=True)
class Conflict:
    """A name registered by several plugins: unusable until one of them goes."""

    kind: str
    name: str
    plugins: tuple[PluginInfo, ...]

    def describe(self) -> str:
        return f"{self.kind} '{self.name}' ({' and '.join(repr(p.name) for p in self.plugins)})"


@dataclass(frozen=True)
class Override:
    """An explicit plugin file replacing a name an installed plugin registers."""

    entry: Entry
    replaced: PluginInfo

    def describe(self) -> str:
        return (
            f"{self.entry.kind} '{self.entry.name}' from '{self.entry.plugin.name}' "
            f"replaces the one from '{self.replaced.name}'"
        )


@dataclass(frozen=True)
class LoadedPlugin:
    """A plugin that loaded: the hooks it implements and how many things of each kind it registered."""

    info: PluginInfo
    hooks: tuple[str, ...]
    registered: dict[str, int]


@dataclass
class Registry:
    """Everything the loaded plugins registered, by kind and name."""

    plugins: list[LoadedPlugin] = field(default_factory=list)
    failures: list[PluginFailure] = field(default_factory=list)
    conflicts: dict[tuple[str, str], Conflict] = field(default_factory=dict)
    overrides: list[Override] = field(default_factory=list)
    kinds: dict[str, Kind] = field(
        default_factory=lambda: {k.name: k for k in (MODEL, *AFTER_COMPONENTS, KIND)}
    )
    """Every kind, in listing order: models, the families' component kinds, datasets, loggers,
    then the kinds themselves."""
    _entries: dict[str, dict[str, Entry]] = field(default_factory=dict)
    _origins: weakref.WeakKeyDictionary[nn.Module, str] = field(default_factory=weakref.WeakKeyDictionary)

    def add_kind(self, kind: Kind) -> None:
        """Add a family's component kind, listed after the models and the kinds before it."""
        rows = list(self.kinds.values())
        at = 1 + sum(1 for row in rows if row.is_component)
        self.kinds = {row.name: row for row in (*rows[:at], kind, *rows[at:])}

    def component_kinds(self) -> list[Kind]:
        return [kind for kind in self.kinds.values() if kind.is_component]

    def component_contexts(self) -> dict[str, KindSpec]:
        """The families' declarations of their component kinds, by name (for ModelContext)."""
        return {kind.name: kind.declared for kind in self.kinds.values() if kind.declared is not None}

    def check_kind(self, kind: str) -> Kind:
        """The kind named ``kind``; one line naming the kinds there are otherwise."""
        if kind not in self.kinds:
            raise ConfigError(f"unknown kind '{kind}': use one of {', '.join(self.kinds)}")
        return self.kinds[kind]

    def add(self, entry: Entry) -> None:
        table = self._entries.setdefault(entry.kind, {})
        key = (entry.kind, entry.name)
        if key in self.conflicts:
            old = self.conflicts[key]
            self.conflicts[key] = Conflict(entry.kind, entry.name, _by_name(*old.plugins, entry.plugin))
            return
        existing = table.get(entry.name)
        if existing is None:
            table[entry.name] = entry
        elif entry.plugin.explicit and not existing.plugin.explicit:
            table[entry.name] = entry
            self.overrides.append(Override(entry, existing.plugin))
        elif existing.plugin.explicit and not entry.plugin.explicit:
            self.overrides.append(Override(existing, entry.plugin))
        else:
            del table[entry.name]
            self.conflicts[key] = Conflict(entry.kind, entry.name, _by_name(existing.plugin, entry.plugin))

    def entries(self, kind: str | None = None) -> list[Entry]:
        kinds = list(self.kinds) if kind is None else [self.check_kind(kind).name]
        return [self._entries[k][n] for k in kinds for n in sorted(self._entries.get(k, {}))]

    def get(self, kind: str, name: str) -> Entry:
        table = self._entries.get(self.check_kind(kind).name, {})
        if name in table:
            return table[name]
        conflict = self.conflicts.get((kind, name))
        if conflict is not None:
            raise PluginError(
                f"{conflict.describe()} is registered by more than one plugin: uninstall or rename one"
            )
        close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
        hint = (
            f"did you mean {', '.join(repr(c) for c in close)}?"
            if close
            else (f"available: {', '.join(sorted(table)) or 'none'}")
        )
        broken = ", ".join(f"'{f.plugin.name}'" for f in self.failures)
        note = f"; plugin {broken} failed to load and may provide it" if broken else ""
        raise UnknownNameError(f"unknown {kind} '{name}': {hint} (see 'genmod list'){note}")

    def model(self, name: str) -> ModelSpec:
        spec: ModelSpec = self.get("model", name).spec
        return spec

    def dataset(self, name: str) -> DatasetSpec:
        spec: DatasetSpec = self.get("dataset", name).spec
        return spec

    def check_explicit_plugins(self) -> None:
        """Raise for the first plugin the user asked for by file that failed to load."""
        for failure in self.failures:
            if failure.plugin.explicit:
                raise PluginError(f"plugin file {failure.plugin.name} failed to load: {failure.error}")

    def component_options(self, kind: str, ref: ComponentRef) -> Any:
        """``ref``'s options validated by the component's own options class.

        Raises pydantic's ``ValidationError``; callers name the config key it belongs to.
        """
        return self.get(kind, ref.name).spec.options.model_validate(ref.options)

    def build_component(self, kind: str, ref: ComponentRef, context: Any) -> nn.Module:
        """Build the component ``ref`` names, refusing one that does not honour its interface."""
        module: nn.Module = self._build(kind, ref, lambda spec, options: spec.build(options, context))
        self._origins[module] = self.get(kind, ref.name).plugin.name
        return module

    def build_logger(self, ref: ComponentRef) -> Logger:
        """Build the experiment tracker ``ref`` names (an entry of ``train.loggers``)."""
        logger: Logger = self._build("logger", ref, lambda spec, options: spec.build(options))
        return logger

    def build_evaluator(self, ref: ComponentRef) -> Evaluator:
        """Build the sample-quality metric ``ref`` names (``--metric``, ``train.sample_metrics``)."""
        evaluator: Evaluator = self._build("evaluator", ref, lambda spec, options: spec.build(options))
        return evaluator

    def _build(self, kind: str, ref: ComponentRef, build: Callable[[Any, Any], Any]) -> Any:
        """``build(spec, options)`` for the registered ``ref``, with its options validated and
        what it returns checked against the kind's interface."""
        entry = self.get(kind, ref.name)
        try:
            options = self.component_options(kind, ref)
        except ValidationError as exc:
            raise ConfigError(f"{kind} '{ref.name}': {exc.errors()[0]['msg']}") from None
        check_build_signature(entry, self.kinds[kind])
        try:
            built = build(entry.spec, options)
        except GenmodError:
            raise  # already one line naming what to do (a tracker's missing client)
        except Exception as exc:  # noqa: BLE001 - plugin code: report it, with where it came from
            raise PluginError(
                f"plugin '{entry.plugin.name}': {kind} '{ref.name}' could not be built: {one_line(exc)}"
            ) from None
        expected = self.kinds[kind].base
        assert expected is not None
        if not isinstance(built, expected):
            raise PluginError(
                f"plugin '{entry.plugin.name}': {kind} '{ref.name}' built a "
                f"{type(built).__name__}, not a genmod.{expected.__name__} subclass"
            )
        return built

    def origin(self, module: nn.Module) -> str | None:
        """The plugin that built ``module`` through :meth:`build_component`, if any."""
        return self._origins.get(module)


def check_build_signature(entry: Entry, kind: Kind) -> None:
    """Refuse a ``build`` that cannot take what genmod passes it, in words rather than as a
    TypeError about a lambda: ``(options, context)``, or ``(options)`` for the kinds that take
    no context (loggers, evaluators)."""
    spelled = "(options, context)" if kind.takes_context else "(options)"
    try:
        inspect.signature(entry.spec.build).bind(*range(spelled.count(",") + 1))
    except TypeError:
        raise PluginError(
            f"plugin '{entry.plugin.name}': the build of {entry.kind} '{entry.name}' must take {spelled}"
        ) from None
    except ValueError:
        return  # a callable without a signature: its call says what is wrong


def _by_name(*plugins: PluginInfo) -> tuple[PluginInfo, ...]:
    return tuple(sorted(plugins, key=lambda p: p.name))


def _load_file_plugin(path: Path) -> ModuleType:
    if not path.is_file():
        raise FileNotFoundError(f"no such file {path}")
    module_name = f"genmod_local_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _discover(files: Sequence[Path]) -> Iterator[tuple[PluginInfo, Callable[[], object]]]:
    # Sorted, so that pluggy's call order, and every listing, is the same on every machine.
    found = sorted(
        entry_points(group=hookspecs.PROJECT), key=lambda ep: (ep.dist.name if ep.dist else "", ep.name)
    )
    per_distribution = Counter(ep.dist.name if ep.dist else ep.name for ep in found)
    for ep in found:
        dist = ep.dist
        name = dist.name if dist else ep.name
        if per_distribution[name] > 1:  # genmod's own: its built-ins and the VAE family
            name = f"{name} ({ep.name})"
        info = PluginInfo(name=name, version=dist.version if dist else "?", key=f"{name}:{ep.name}")
        yield info, ep.load
    for path in files:
        info = PluginInfo(name=str(path), version="file", explicit=True, key=f"file:{path}")
        yield info, functools.partial(_load_file_plugin, Path(path))


def _check_hooks(manager: pluggy.PluginManager, module: object, hooks: list[str]) -> None:
    """pytest's ``check_pending`` for one plugin, plus hook-named functions missing ``@hookimpl``;
    ``hooks``: those of every kind."""
    for caller in manager.get_hookcallers(module) or []:
        unknown = [i for i in caller.get_hookimpls() if i.plugin is module and not i.optionalhook]
        if not caller.has_spec() and unknown:
            close = difflib.get_close_matches(caller.name, hooks, n=1)
            hint = f"did you mean {close[0]}?" if close else f"the hooks are {', '.join(hooks)}"
            raise PluginError(f"{caller.name} is not a genmod hook: {hint}")
    for hook in hooks:
        if callable(getattr(module, hook, None)) and manager.parse_hookimpl_opts(module, hook) is None:
            raise PluginError(f"{hook} is not marked with @genmod.hookimpl, so it would never be called")


def _innermost_plugin(frames: Iterator[FrameType], codes: dict[int, str]) -> str | None:
    """The plugin whose hook implementation is innermost among ``frames``.

    ``codes`` maps the ``id`` of each implementation's code object to its plugin: code objects
    compare equal when two plugins share source text, so they cannot be keys themselves.
    """
    found = None
    for frame in frames:
        found = codes.get(id(frame.f_code), found)
    return found


def _stack() -> Iterator[FrameType]:
    """The calling frames, outermost first."""
    frames = []
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return reversed(frames)


def _traceback(tb: TracebackType | None) -> Iterator[FrameType]:
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def _call_hooks(
    manager: pluggy.PluginManager,
    loaded: dict[str, PluginInfo],
    failures: list[PluginFailure],
    kinds: Sequence[Kind],
) -> list[Entry]:
    """Call each of ``kinds``' hooks once through pluggy and return what was registered, by whom.

    pluggy calls all implementations in one go, so the plugin behind each ``register`` call is
    the hook implementation on the call stack. A plugin whose hook raises is unregistered and
    the hooks are called again without it, so nothing it registered survives.
    """
    while True:
        codes = {
            id(impl.function.__code__): impl.plugin_name
            for kind in kinds
            for impl in getattr(manager.hook, kind.hook).get_hookimpls()
            if hasattr(impl.function, "__code__")
        }
        staged: list[Entry] = []
        kind: Kind | None = None
        try:
            for kind in kinds:
                getattr(manager.hook, kind.hook)(register=_registrar(kind, codes, loaded, staged))
            return staged
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - plugin code: drop the plugin, keep the rest
            key = _innermost_plugin(_traceback(exc.__traceback__), codes)
            if key is None or kind is None:
                raise
            manager.unregister(name=key)
            failures.append(PluginFailure(loaded.pop(key), f"{kind.hook}: {one_line(exc)}"))


def _registrar(
    kind: Kind, codes: dict[int, str], loaded: dict[str, PluginInfo], staged: list[Entry]
) -> Callable[[object], None]:
    def register(spec: object) -> None:
        key = _innermost_plugin(_stack(), codes)
        if key is None:
            raise PluginError(f"{kind.hook}'s register was called after the hook returned")
        if not isinstance(spec, kind.spec):
            raise PluginError(
                f"{kind.hook} registered a {type(spec).__name__}; expected genmod.{kind.spec.__name__}"
            )
        staged.append(Entry(kind.name, spec.name, spec, loaded[key]))  # type: ignore[attr-defined]

    return register


def load_registry(plugin_files: Sequence[Path] = ()) -> Registry:
    """Import every installed plugin (and ``plugin_files``) and collect their registrations."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    registry = Registry()
    loaded: dict[str, PluginInfo] = {}
    for info, load in _discover(plugin_files):
        try:
            module = load()
            manager.register(module, name=info.key)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any plugin bug must not break the CLI
            # sys.exit() in a plugin's import would otherwise end every command, silently.
            if manager.has_plugin(info.key):
                manager.unregister(name=info.key)
            reason = (
                f"called sys.exit({exc.code}) while being imported"
                if isinstance(exc, SystemExit)
                else one_line(exc)
            )
            registry.failures.append(PluginFailure(info, reason))
            continue
        loaded[info.key] = info
    # The families' kinds first: their hooks must exist before the plugins are checked.
    staged = _call_hooks(manager, loaded, registry.failures, [KIND])
    for entry in staged:
        _add_component_hook(manager, entry.spec, loaded, registry)
    hooks = [kind.hook for kind in registry.kinds.values()]
    hooks += [entry.spec.hook for entry in staged]
    for key in list(loaded):
        try:
            _check_hooks(manager, manager.get_plugin(key), hooks)
        except PluginError as exc:
            manager.unregister(name=key)
            registry.failures.append(PluginFailure(loaded.pop(key), str(exc)))
    staged = [entry for entry in staged if entry.plugin in loaded.values()]
    for entry in staged:
        registry.add(entry)
    kept = registry.entries("kind")  # in the order the families declared them: their listing order
    for entry in sorted(kept, key=lambda e: next(i for i, s in enumerate(staged) if s is e)):
        if entry.name in registry.kinds:
            registry.failures.append(
                PluginFailure(entry.plugin, f"register_kinds: kind '{entry.name}' is one of genmod's own")
            )
        else:
            registry.add_kind(Kind.of_component(entry.spec))
    others = [kind for kind in registry.kinds.values() if kind is not KIND]
    staged += _call_hooks(manager, loaded, registry.failures, others)
    for entry in staged:
        if entry.kind != "kind":
            registry.add(entry)
    for key, info in loaded.items():
        callers = manager.get_hookcallers(manager.get_plugin(key)) or []
        counts = Counter(entry.kind for entry in staged if entry.plugin is info)
        registry.plugins.append(LoadedPlugin(info, tuple(sorted(c.name for c in callers)), dict(counts)))
    return registry


def _add_component_hook(
    manager: pluggy.PluginManager, declared: KindSpec, loaded: dict[str, PluginInfo], registry: Registry
) -> None:
    """Add the hookspec of a declared kind; a plugin whose implementation of that hook takes
    other parameters than ``register`` fails, as it would against genmod's own hooks."""
    caller = getattr(manager.hook, declared.hook, None)
    if caller is not None and caller.has_spec():
        return  # declared twice: the registry names the conflict
    for impl in caller.get_hookimpls() if caller is not None else []:
        extra = sorted(set(impl.argnames) - {"register"})
        if extra and impl.plugin_name in loaded:
            manager.unregister(name=impl.plugin_name)
            error = f"{declared.hook} takes {', '.join(extra)}, which the hook does not pass (only register)"
            registry.failures.append(PluginFailure(loaded.pop(impl.plugin_name), error))
    manager.add_hookspecs(hookspecs.component_hookspec(declared))
