"""Third-party plugins: discovered from installed distributions, isolated when broken."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from genmod.errors import PluginError
from genmod.plugins import load_registry
from helpers import genmod, pip_install

LAPLACE_PLUGIN = """
import torch
from torch.distributions import Independent, Laplace
from genmod import ComponentSpec, Prior, hookimpl


class LaplacePrior(Prior):
    def __init__(self, latent_dim):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def distribution(self):
        return Independent(Laplace(self.loc, self.scale, validate_args=False), 1)


@hookimpl
def register_priors(register):
    register(ComponentSpec(name="laplace", build=lambda options, ctx: LaplacePrior(ctx.latent_dim), description="Laplace(0, 1)"))
"""


def install_distribution(site: Path, monkeypatch, dist: str, module: str, source: str) -> None:
    """Lay out a distribution exactly as pip installs one: a module plus its .dist-info."""
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[genmod]\n{dist} = {module}\n")
    monkeypatch.syspath_prepend(str(site))


def test_installed_prior_plugin_is_listed_and_trains(tmp_path, monkeypatch):
    install_distribution(tmp_path / "site", monkeypatch, "genmod-laplace", "genmod_laplace_a", LAPLACE_PLUGIN)
    listed = json.loads(genmod("list", "--json", "--kind", "prior").output)["entries"]
    laplace = next(e for e in listed if e["name"] == "laplace")
    assert (laplace["plugin"], laplace["version"]) == ("genmod-laplace", "1.2.3")

    out = tmp_path / "run"
    result = genmod(
        "run",
        "mlp-vae",
        "--epochs",
        1,
        "--set",
        "data.limit=1000",
        "--set",
        "model.prior=laplace",
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    assert "prior: laplace" in (out / "config.yaml").read_text()
    row = json.loads((out / "metrics.jsonl").read_text())
    assert (
        row["test"]["terms"]["kl"] > 0 and row["test"]["loss"] < 400
    )  # Monte Carlo KL, since torch has no Normal-Laplace KL


def test_plugin_that_fails_to_import_is_reported_and_others_still_work(tmp_path, monkeypatch):
    install_distribution(
        tmp_path / "site",
        monkeypatch,
        "genmod-broken",
        "genmod_broken_b",
        "raise ImportError('no module named flux')\n",
    )
    result = genmod("list")
    assert result.exit_code == 0
    assert "failed to load" in result.output and "genmod-broken" in result.output and "flux" in result.output
    assert "mlp-vae" in result.output
    run = genmod(
        "run",
        "mlp-vae",
        "--epochs",
        1,
        "--set",
        "data.limit=500",
        "--out",
        tmp_path / "ok",
        "--device",
        "cpu",
    )
    assert run.exit_code == 0, run.output


def test_two_plugins_registering_one_name_conflict_only_on_that_name(tmp_path, monkeypatch):
    install_distribution(tmp_path / "site", monkeypatch, "genmod-laplace", "genmod_laplace_c", LAPLACE_PLUGIN)
    install_distribution(
        tmp_path / "site", monkeypatch, "genmod-laplace-fork", "genmod_laplace_d", LAPLACE_PLUGIN
    )
    registry = load_registry()
    with pytest.raises(PluginError, match="prior 'laplace' \\('genmod-laplace' and 'genmod-laplace-fork'\\)"):
        registry.get("prior", "laplace")
    assert registry.get("model", "mlp-vae").plugin.name == "genmod-mlp-vae"  # everything else works

    for command in ("list", "plugins"):
        result = genmod(command)
        assert result.exit_code == 0, result.output
        assert "conflicts" in result.output and "genmod-laplace-fork" in result.output
    listed = json.loads(genmod("list", "--json").output)
    assert listed["conflicts"] == [
        {"kind": "prior", "name": "laplace", "plugins": ["genmod-laplace", "genmod-laplace-fork"]}
    ]
    run = genmod("run", "mlp-vae", "--set", "model.prior=laplace", "--out", tmp_path / "run")
    assert run.exit_code == 2 and "genmod-laplace-fork" in run.output and not (tmp_path / "run").exists()


def test_local_plugin_file(tmp_path):
    plugin = tmp_path / "my_prior.py"
    plugin.write_text(LAPLACE_PLUGIN)
    result = genmod("list", "--plugin", plugin, "--kind", "prior")
    assert result.exit_code == 0 and "laplace" in result.output


@pytest.mark.slow
def test_pip_installed_plugin_package_shows_in_list(tmp_path):
    """The real thing: pip builds and installs a plugin package from a temp dir."""
    package = tmp_path / "genmod-laplace"
    (package / "genmod_laplace_pip").mkdir(parents=True)
    (package / "genmod_laplace_pip" / "__init__.py").write_text(LAPLACE_PLUGIN)
    (package / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "genmod-laplace"
            version = "0.3.0"

            [project.entry-points.genmod]
            laplace = "genmod_laplace_pip"
            """
        )
    )
    target = tmp_path / "site"
    subprocess.run(
        pip_install(package, target),
        check=True,
        capture_output=True,
    )
    listing = subprocess.run(
        [sys.executable, "-m", "genmod", "list", "--json"],
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    entries = json.loads(listing.stdout)["entries"]
    assert {
        "kind": "prior",
        "name": "laplace",
        "plugin": "genmod-laplace",
        "version": "0.3.0",
    }.items() <= next(e for e in entries if e["name"] == "laplace").items()
