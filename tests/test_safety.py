"""Nothing a received run folder or exported file names runs code: a remembered plugin file is
imported only when this user named it here and it is unchanged, or when they say they trust it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_plugins import LAPLACE_PLUGIN

import genmod as api
from genmod.errors import UntrustedPluginError
from helpers import genmod, small_run

PRETRAINED_VAE = Path(__file__).resolve().parents[1] / "pretrained" / "vae"
# A plugin file that leaves a mark where it runs: the tests assert on the mark, not on words.
MARKING_PLUGIN = "from pathlib import Path\nPath('{mark}').write_text('ran')\n"


def received(tmp_path: Path, written: str) -> tuple[Path, Path]:
    """A shipped model as a colleague might send it: ``got/`` whose config names the plugin file
    ``written`` (relative, as in the issue, or absolute), with that file beside it. Returns the
    folder and the mark the file leaves if it ever runs."""
    got, mark = tmp_path / "got", tmp_path / "mark"
    shutil.copytree(PRETRAINED_VAE, got)
    (got / "helper.py").write_text(MARKING_PLUGIN.format(mark=mark))
    with (got / "config.yaml").open("a") as config:
        config.write(f"plugins: [{written}]\n")
    return got, mark


def one_line_naming(result, name: str) -> str:
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert name in line and "was not run" in line and f"--plugin {name}" in line
    assert "Traceback" not in result.output
    return line


@pytest.mark.parametrize("written", ["got/helper.py", "ABSOLUTE"], ids=["relative", "absolute"])
def test_a_received_run_folder_imports_none_of_the_plugin_files_it_names(tmp_path, written, data_dir):
    written = str(tmp_path / "got" / "helper.py") if written == "ABSOLUTE" else written
    got, mark = received(tmp_path, written)
    for args in (
        ["sample", got, "-n", 4, "-o", tmp_path / "s.png"],
        ["eval", got, "--k", 2, "--images", 4],
        ["reconstruct", got, "-o", tmp_path / "r.png"],
        ["export", got],
        ["run", "--resume", got, "--epochs", 701],
    ):
        one_line_naming(genmod(*args), written)
    with pytest.raises(UntrustedPluginError):
        api.load(got)
    info = genmod("info", got)
    assert info.exit_code == 0 and f"plugin file {written}: not trusted" in info.output
    assert not mark.exists() and not (got / "model.safetensors").exists()

    # Named by the user, it runs: that is the user's choice.
    chosen = genmod("sample", got, "-n", 4, "-o", tmp_path / "s.png", "--plugin", got / "helper.py")
    assert chosen.exit_code == 0, chosen.output
    assert mark.read_text() == "ran"


def test_an_old_export_naming_a_plugin_file_is_refused_and_a_new_one_names_none(tmp_path, data_dir):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    got, mark = received(tmp_path, "got/helper.py")
    exported = genmod("export", got, "--trust-plugins", "-o", tmp_path / "new.safetensors")
    assert exported.exit_code == 2 and "no longer exists" in exported.output  # got/got/helper.py
    (got / "config.yaml").write_text((PRETRAINED_VAE / "config.yaml").read_text())
    assert genmod("export", got, "-o", tmp_path / "new.safetensors").exit_code == 0
    with safe_open(str(tmp_path / "new.safetensors"), "pt") as handle:
        metadata = handle.metadata()
    assert json.loads(metadata["config"])["plugins"] == []
    assert json.loads(metadata["requires"]) == {"genmod-mlp-vae": api.__version__}

    # An export from genmod 0.2 kept the run's plugin list in its metadata.
    config = {**json.loads(metadata["config"]), "plugins": [str(got / "helper.py")]}
    old = tmp_path / "elsewhere" / "m.safetensors"
    old.parent.mkdir()
    save_file(
        load_file(str(tmp_path / "new.safetensors")), str(old), {**metadata, "config": json.dumps(config)}
    )
    one_line_naming(genmod("sample", old, "-n", 4, "-o", tmp_path / "s.png"), str(got / "helper.py"))
    assert not mark.exists()


def test_a_users_own_plugin_run_works_without_plugin_until_the_file_changes(tmp_path, data_dir):
    plugin = tmp_path / "laplace.py"
    plugin.write_text(LAPLACE_PLUGIN)
    out = tmp_path / "run"
    trained = small_run(out, "--epochs", 1, "--plugin", plugin, "--set", "model.prior=laplace")
    assert trained.exit_code == 0, trained.output
    assert genmod("sample", out, "-n", 4).exit_code == 0
    assert "trusted: you trained with it here" in genmod("info", out).output

    plugin.write_text(LAPLACE_PLUGIN + "\n# changed by someone else\n")
    one_line_naming(genmod("sample", out, "-n", 4), str(plugin))
    assert genmod("sample", out, "-n", 4, "--trust-plugins").exit_code == 0
    assert genmod("sample", out, "-n", 4, "--plugin", plugin).exit_code == 0  # named: trusted again
    assert genmod("sample", out, "-n", 4).exit_code == 0


def test_an_export_of_a_model_from_a_missing_plugin_names_the_plugin(tmp_path, data_dir):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    shipped = tmp_path / "vae"
    shutil.copytree(PRETRAINED_VAE, shipped)
    assert genmod("export", shipped, "-o", tmp_path / "m.safetensors").exit_code == 0
    with safe_open(str(tmp_path / "m.safetensors"), "pt") as handle:
        metadata = handle.metadata()
    config = json.loads(metadata["config"])
    config["model"]["name"] = "pixel-vae"
    renamed = {**metadata, "config": json.dumps(config), "model_name": "pixel-vae"}
    renamed["requires"] = json.dumps({"genmod-pixels": "0.4.1"})
    save_file(load_file(str(tmp_path / "m.safetensors")), str(tmp_path / "p.safetensors"), renamed)
    result = genmod("sample", tmp_path / "p.safetensors")
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "unknown model 'pixel-vae'" in line and "genmod-pixels 0.4.1: pip install it" in line
