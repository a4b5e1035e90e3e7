"""The plugin contract of genmod 0.2: explicit plugins must load, no hook is ignored silently,
conflicts stay local, pluggy does the calling, and one table of kinds drives it all."""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

import pytest
import torch
from test_plugins import LAPLACE_PLUGIN, install_distribution

import genmod
from genmod import hookspecs
from genmod.checkpoint import REQUIRED, CheckpointState
from genmod.config_loader import resolve_run_config
from genmod.kinds import AFTER_COMPONENTS, KIND, MODEL
from genmod.plugins import load_registry
from genmod.runner import build_model
from helpers import genmod as cli

BROKEN = "raise RuntimeError('flux capacitor missing')\n"


def write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


# 1. Explicit means required ---------------------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [["run", "mlp-vae"], ["eval", "somewhere"], ["sample", "somewhere"], ["info", "mlp-vae"]],
    ids=["run", "eval", "sample", "info"],
)
def test_an_explicit_plugin_that_fails_stops_the_command_naming_the_file(tmp_path, command):
    plugin = write(tmp_path / "broken.py", BROKEN)
    result = cli(*command, "--plugin", plugin)
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert str(plugin) in line and "RuntimeError: flux capacitor missing" in line
    assert not Path("runs").exists()


def test_a_plugin_from_the_environment_variable_is_explicit_too(tmp_path, monkeypatch):
    monkeypatch.setenv("GENMOD_PLUGINS", str(write(tmp_path / "broken.py", BROKEN)))
    result = cli("run", "mlp-vae", "--out", tmp_path / "run")
    assert result.exit_code == 2 and "broken.py failed to load" in result.output


def test_a_failed_installed_plugin_is_named_in_a_warning_before_training(tmp_path, monkeypatch):
    install_distribution(tmp_path / "site", monkeypatch, "genmod-flux", "genmod_flux_w", BROKEN)
    result = cli("run", "mlp-vae", "--epochs", 1, "--set", "data.limit=200", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    warning = next(line for line in result.output.splitlines() if line.startswith("warning:"))
    assert "'genmod-flux' failed to load" in warning and "flux capacitor missing" in warning
    assert result.output.index("warning:") < result.output.index("training mlp-vae")


# 2. No silent hooks -------------------------------------------------------------------------
MISSPELLED = """
from genmod import hookimpl

@hookimpl
def register_prior(register):
    pass
"""

WRONG_SIGNATURE = """
from genmod import hookimpl

@hookimpl
def register_priors(register, options):
    pass
"""

UNMARKED = """
def register_priors(register):
    pass
"""


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (MISSPELLED, "register_prior is not a genmod hook: did you mean register_priors?"),
        (WRONG_SIGNATURE, "options"),
        (UNMARKED, "register_priors is not marked with @genmod.hookimpl"),
    ],
    ids=["misspelled", "wrong-signature", "unmarked"],
)
def test_a_hook_genmod_would_never_call_is_a_failure_of_its_plugin(tmp_path, source, message):
    plugin = write(tmp_path / "typo.py", source)
    registry = load_registry([plugin])
    (failure,) = registry.failures
    assert failure.plugin.name == str(plugin) and message in failure.error
    result = cli("list", "--plugin", plugin)
    assert "failed to load" in result.output and message in result.output.replace("\n", " ")
    assert cli("run", "mlp-vae", "--plugin", plugin).exit_code == 2


# 3. An explicit file overrides an installed name ---------------------------------------------
def test_an_explicit_plugin_file_overrides_an_installed_name(tmp_path, monkeypatch):
    install_distribution(tmp_path / "site", monkeypatch, "genmod-laplace", "genmod_laplace_o", LAPLACE_PLUGIN)
    mine = write(tmp_path / "my_laplace.py", LAPLACE_PLUGIN.replace("Laplace(0, 1)", "my own Laplace"))
    registry = load_registry([mine])
    entry = registry.get("prior", "laplace")
    assert entry.plugin.name == str(mine) and entry.description == "my own Laplace"
    assert not registry.conflicts
    (override,) = registry.overrides
    assert override.replaced.name == "genmod-laplace"
    listed = json.loads(cli("list", "--json", "--plugin", mine).output)
    assert listed["overrides"] == [
        {"kind": "prior", "name": "laplace", "plugin": str(mine), "replaces": "genmod-laplace"}
    ]


# 4. genmod plugins ---------------------------------------------------------------------------
def test_genmod_plugins_shows_each_plugin_its_hooks_and_what_it_registered(tmp_path):
    broken = write(tmp_path / "broken.py", BROKEN)
    listing = json.loads(cli("plugins", "--json", "--plugin", broken).output)
    plugins = {p["plugin"]: p for p in listing["plugins"]}
    zoo = plugins["genmod-zoo"]
    assert zoo["version"] == "0.2.0" and not zoo["explicit"]
    assert zoo["registered"] == {"model": 8, "encoder": 3, "decoder": 2, "prior": 2, "likelihood": 3}
    assert "register_priors" in zoo["hooks"] and "register_datasets" not in zoo["hooks"]
    assert plugins["genmod (builtins)"]["registered"]["dataset"] == 5
    assert plugins["genmod (builtins)"]["registered"]["evaluator"] == 3
    # The VAE family is a plugin like any other family's: its kinds and its two components.
    assert plugins["genmod (vae)"]["registered"] == {"kind": 4, "prior": 1, "likelihood": 1}
    (failed,) = listing["failed"]
    assert failed["plugin"] == str(broken) and "flux capacitor" in failed["error"]

    table = cli("plugins", "--plugin", broken)
    assert table.exit_code == 0
    assert "genmod-mlp-vae" in table.output and "1 model, 1 encoder" in table.output
    assert "failed to load" in table.output and "flux capacitor" in table.output


# 5. pluggy does the calling ------------------------------------------------------------------
ORDER = """
from genmod import hookimpl

CALLS = []

class Plain:
    @hookimpl
    def register_datasets(self, register):
        CALLS.append("plain")

class First:
    @hookimpl(tryfirst=True)
    def register_datasets(self, register):
        CALLS.append("first")

class Wrapper:
    @hookimpl(wrapper=True)
    def register_datasets(self, register):
        CALLS.append("wrapper:before")
        result = yield
        CALLS.append("wrapper:after")
        return result
"""


def test_tryfirst_and_hook_wrappers_take_effect(tmp_path):
    """pluggy calls the last registered plugin first; ``tryfirst`` must beat that."""
    write(tmp_path / "order_plugins.py", ORDER)
    registry_files = []
    for cls in ("Wrapper", "First", "Plain"):  # Plain registered last: pluggy would call it first
        registry_files.append(
            write(
                tmp_path / f"use_{cls.lower()}.py", f"import order_plugins\nplugin = order_plugins.{cls}()\n"
            )
        )
    # A file plugin is a module; expose each object's hook as the module's own function.
    for path, cls in zip(registry_files, ("Wrapper", "First", "Plain"), strict=True):
        path.write_text(
            f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nimport order_plugins\n"
            f"register_datasets = order_plugins.{cls}().register_datasets\n"
        )
    load_registry(registry_files)
    import order_plugins

    assert order_plugins.CALLS == ["wrapper:before", "first", "plain", "wrapper:after"]


# 6. One table of kinds ----------------------------------------------------------------------
def test_the_table_of_kinds_matches_the_hookspecs_and_the_cli(registry):
    specs = {name for name in dir(hookspecs) if name.startswith("register_")}
    assert {kind.hook for kind in (MODEL, KIND, *AFTER_COMPONENTS)} == specs
    names = list(registry.kinds)
    assert names[:5] == ["model", "encoder", "decoder", "prior", "likelihood"]  # the VAE family's
    result = cli("list", "--kind", "pirors")
    assert result.exit_code == 2 and ", ".join(names) in result.output


FAMILY = """
import torch
from pydantic import Field
from torch import nn

from genmod import (
    Bound, ComponentRef, ComponentSpec, GenerativeModel, KindSpec, ModelConfig, ModelSpec, hookimpl,
)


class Squash(nn.Module):
    \"\"\"The family's kind: an elementwise map of pixel logits.\"\"\"


class Tanh(Squash):
    def forward(self, x):
        return torch.tanh(x)


class Sigmoid(Squash):
    def forward(self, x):
        return torch.sigmoid(x)


class Pixels(GenerativeModel):
    def __init__(self, squash, size):
        super().__init__()
        self.squash, self.logits = squash, nn.Parameter(torch.zeros(size))

    def loss(self, x):
        p = self.squash(self.logits).clamp(1e-4, 1 - 1e-4)
        nll = -(x.flatten(1) * p.log() + (1 - x.flatten(1)) * (1 - p).log()).sum(1)
        return nll.mean(), Bound(nll)

    def sample(self, n):
        return self.squash(self.logits).clamp(0, 1).view(1, 1, 28, 28).expand(n, 1, 28, 28)


class PixelsConfig(ModelConfig):
    squash: ComponentRef = Field(ComponentRef(name="sigmoid"), description="The squash, by name.")


@hookimpl
def register_kinds(register):
    register(KindSpec(name="squash", plural="squashes", base=Squash,
                      context=lambda model, size: size, description="pixel logits to probabilities"))


@hookimpl
def register_squashes(register):
    register(ComponentSpec(name="sigmoid", build=lambda options, size: Sigmoid(), description="1/(1+e^-x)"))
    register(ComponentSpec(name="tanh", build=lambda options, size: Tanh(), description="tanh"))


@hookimpl
def register_models(register):
    register(ModelSpec(name="pixels", config=PixelsConfig,
                       build=lambda config, context: Pixels(context.component("squash", config.squash, 784), 784)))
"""


def test_a_family_declares_its_own_kind_of_component_like_the_vae_families(tmp_path, data_dir):
    plugin = write(tmp_path / "family.py", FAMILY)
    registry = load_registry([plugin])
    assert not registry.failures
    assert [e.name for e in registry.entries("squash")] == ["sigmoid", "tanh"]
    assert "squash" in cli("list", "--kind", "kind", "--plugin", plugin).output
    assert "register_squashes" in cli("info", "squash", "--plugin", plugin).output
    plugins = json.loads(cli("plugins", "--json", "--plugin", plugin).output)["plugins"]
    mine = next(p for p in plugins if p["plugin"] == str(plugin))
    assert mine["registered"] == {"kind": 1, "squash": 2, "model": 1}
    assert "register_squashes" in mine["hooks"]
    out = tmp_path / "run"
    result = cli(
        "run", "pixels", "--plugin", plugin, "--epochs", 1, "--set", "data.limit=500",
        "--set", "model.squash=tanh", "--out", out, "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    typo = cli("run", "pixels", "--plugin", plugin, "--set", "model.squash=tahn")
    assert typo.exit_code == 2 and "unknown squash 'tahn': did you mean 'tanh'?" in typo.output


def _imports(path: Path) -> set[str]:
    """Every genmod module ``path`` imports outside functions, those under TYPE_CHECKING
    included. Imports inside functions run when called, after every module has loaded (the 0.2
    import paths kept by a module ``__getattr__``), so they cannot make a cycle."""
    found = set()
    for node in _outside_functions(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("genmod"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("genmod"))
    return found


def _outside_functions(node: ast.AST):
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield child
            yield from _outside_functions(child)


def test_no_import_cycle_in_genmod_even_under_type_checking():
    package = Path(genmod.__file__).parent
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] != "__main__" and parts != ("__init__",):
            modules[".".join(("genmod", *parts)).removesuffix(".__init__")] = path
    assert "genmod.vae.model" in modules and "genmod.runner" in modules
    graph = {
        name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()
    }

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, " -> ".join((*trail, name))
        for child in graph[name]:
            visit(child, (*trail, name))

    for name in graph:
        visit(name, ())


# 8. The prior is evaluated once per step -----------------------------------------------------
def test_the_vampprior_is_built_once_per_training_step(registry):
    config = resolve_run_config(registry, model="mlp-vae", overrides=["model.prior=vampprior"])
    model = build_model(config, registry, (1, 28, 28))
    calls = []
    original = type(model.prior).distribution
    model.prior.distribution = lambda: calls.append(1) or original(model.prior)  # type: ignore[method-assign]
    loss, _ = model(torch.rand(8, 1, 28, 28))
    loss.backward()
    assert len(calls) == 1


# 9. One identity for a plugin ----------------------------------------------------------------
def test_a_plugin_is_named_the_same_in_every_listing_and_message(tmp_path):
    table = cli("list", "--kind", "prior").output
    entries = json.loads(cli("list", "--json").output)["entries"]
    plugins = json.loads(cli("plugins", "--json").output)["plugins"]
    vamp = next(e for e in entries if e["name"] == "vampprior")
    assert vamp["plugin"] == "genmod-zoo" and "genmod-zoo" in table
    assert "genmod-zoo" in {p["plugin"] for p in plugins}
    info = cli("info", "vampprior").output
    assert "from plugin 'genmod-zoo' 0.2.0" in info


# 10. --set on a default component without a recipe; the header names the processes -----------
NO_RECIPE = """
from genmod import ModelSpec, hookimpl
from genmod_zoo.models import ComposedVAEConfig, build_vae

@hookimpl
def register_models(register):
    register(ModelSpec(name="bare-vae", config=ComposedVAEConfig, build=build_vae))
"""


def test_set_reaches_options_of_a_default_component_without_a_recipe(tmp_path):
    plugin = write(tmp_path / "bare.py", NO_RECIPE)
    registry = load_registry([plugin])
    config = resolve_run_config(registry, model="bare-vae", overrides=["model.decoder.hidden_dims=[32]"])
    assert config.model.decoder.name == "mlp" and config.model.decoder.options == {"hidden_dims": [32]}
    assert config.model.encoder.name == "mlp" and not config.model.encoder.options
    result = cli("run", "mlp-vae", "--set", "model.prior.components=5", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "model.prior.components" in result.output


# 12. One schema for the checkpoint and the metrics row ---------------------------------------
def test_checkpoint_and_metrics_follow_their_one_schema(tmp_path, data_dir):
    out = tmp_path / "run"
    assert cli("run", "mlp-vae", "--epochs", 1, "--set", "data.limit=300", "--out", out).exit_code == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    schema = CheckpointState.__required_keys__ | CheckpointState.__optional_keys__
    assert set(REQUIRED) <= set(state) and set(state) - schema == {"format", "format_version"}
    from genmod.metrics import read_metrics

    (record,) = read_metrics(out / "metrics.jsonl")
    assert record.epoch == 1 and set(record.test.terms) == {"reconstruction", "kl"}
    assert record.model_dump() == state["history"][0]
