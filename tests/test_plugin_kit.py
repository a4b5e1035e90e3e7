"""The plugin kit: the new-plugin scaffold, info, local plugins and broken-plugin messages."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import genmod, pip_install

BROKEN = """
from torch import nn
from genmod import ComponentSpec, Decoder, hookimpl


class FlatDecoder(Decoder):
    def __init__(self, latent_dim):
        super().__init__()
        self.linear = nn.Linear(latent_dim, 784)

    def forward(self, z):
        return self.linear(z)  # forgets to restore the image shape


class NotADecoder(nn.Module):
    def forward(self, z):
        return z


class ForgotForward(Decoder):
    pass


@hookimpl
def register_decoders(register):
    register(ComponentSpec(name="flat", build=lambda options, ctx: FlatDecoder(ctx.latent_dim)))
    register(ComponentSpec(name="plain", build=lambda options, ctx: NotADecoder()))
    register(ComponentSpec(name="forgot", build=lambda options, ctx: ForgotForward()))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("decoder", "message"),
    [
        (
            "flat",
            "decoder FlatDecoder of model 'beta-vae' returned (2, 784); expected a tensor of the data's shape (2, 1, 28, 28)",
        ),
        ("plain", "decoder 'plain' built a NotADecoder, not a genmod.Decoder subclass"),
        ("forgot", "does not implement forward()"),
    ],
)
def test_broken_components_are_refused_naming_the_plugin(tmp_path, decoder, message):
    plugin = tmp_path / "shoddy.py"
    plugin.write_text(BROKEN)
    out = tmp_path / "out"
    result = genmod("run", "beta-vae", "--plugin", plugin, "--set", f"model.decoder={decoder}", "--out", out)
    assert result.exit_code == 2
    assert message in result.output and "shoddy" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_plugins_from_environment_variable(tmp_path, monkeypatch):
    plugin = tmp_path / "shoddy.py"
    plugin.write_text(BROKEN)
    monkeypatch.setenv("GENMOD_PLUGINS", str(plugin))
    result = genmod("list", "--kind", "decoder")
    assert result.exit_code == 0
    assert {"flat", "plain", "forgot", "mlp", "conv"} <= set(result.output.split())
    assert "prior" not in result.output.split()


def test_info_shows_origin_and_config_schema():
    result = genmod("info", "vampprior")
    assert result.exit_code == 0
    for text in ("prior vampprior", "'genmod-zoo' 0.2.0", "pseudo_inputs", "int", "500", "pseudo-inputs K"):
        assert text in result.output
    model = genmod("info", "iwae")
    for text in ("model iwae", "latent_dim", "Importance samples", "recipe:", "iwae.yaml"):
        assert text in model.output
    assert genmod("info", "vamprior").exit_code == 2


@pytest.mark.slow
def test_unit_tests_that_need_no_images_pass_without_mnist(tmp_path):
    tests = Path(__file__).parent
    offline = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "test_elbo.py",
            "test_components.py",
        ],
        cwd=tests,
        env={**os.environ, "GENMOD_DATA_DIR": str(tmp_path / "no-data")},
        capture_output=True,
        text=True,
    )
    assert offline.returncode == 0 and " passed" in offline.stdout, offline.stdout


@pytest.mark.parametrize("name, family", [("student-t", "Normal"), ("laplace", "Laplace")])
def test_new_plugin_scaffold_starts_from_the_named_distribution_else_a_placeholder(tmp_path, name, family):
    created = genmod("new-plugin", name, "--dir", tmp_path)
    assert created.exit_code == 0, created.output
    source = (tmp_path / f"genmod-{name}" / f"genmod_{name.replace('-', '_')}" / "__init__.py").read_text()
    assert f"Independent({family}(" in source  # a laplace plugin's prior is a Laplace
    if family == "Normal":
        assert f"A placeholder for the {name} prior" in source
    assert genmod("new-plugin", name, "--dir", tmp_path).exit_code == 2  # never overwrites
    assert genmod("new-plugin", "Bad Name").exit_code == 2


@pytest.mark.slow
def test_new_plugin_scaffold_installs_lists_trains_and_passes_its_own_test(tmp_path):
    assert genmod("new-plugin", "laplace", "--dir", tmp_path).exit_code == 0
    package = tmp_path / "genmod-laplace"
    site = tmp_path / "site"
    subprocess.run(
        pip_install(package, site),
        check=True,
        capture_output=True,
    )
    # Offline and without MNIST: the scaffold's tests make their own images.
    env = {**os.environ, "PYTHONPATH": str(site), "GENMOD_DATA_DIR": str(tmp_path / "no-data")}
    own_tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", package / "tests"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert own_tests.returncode == 0, own_tests.stdout + own_tests.stderr
    assert "3 passed" in own_tests.stdout
