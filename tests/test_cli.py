import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers import SMALL, assert_resume_is_bit_exact, genmod, losses, metrics, small_run

RUN_FILES = {
    "config.yaml",
    "metrics.jsonl",
    "samples_epoch_000.png",
    "samples_epoch_001.png",
    "reconstructions.png",
    "loss_plot.png",
    "checkpoint.pt",
}


def test_help_lists_the_commands():
    result = genmod("--help")
    assert result.exit_code == 0
    for command in ("list", "run"):
        assert command in result.output


def test_the_cli_calls_only_the_public_python_api():
    """What a command does, a script can do: the CLI imports genmod's facade alone (and the
    OpenMP start-up, which must run before torch loads)."""
    import ast
    import pkgutil

    import genmod
    import genmod.cli

    tree = ast.parse(Path(genmod.cli.__file__).read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    assert {m for m in modules if m and m.startswith("genmod.")} == {"genmod.openmp"}
    # A public name that were also a submodule's would turn into the module once it is imported.
    submodules = {m.name for m in pkgutil.iter_modules(genmod.__path__)}
    assert not set(genmod.__all__) & submodules


def test_list_shows_the_reference_model_and_builtins():
    result = genmod("list")
    assert result.exit_code == 0, result.output
    for name in ("mlp-vae", "genmod-mlp-vae", "standard-normal", "bernoulli", "mnist"):
        assert name in result.output
    listed = json.loads(genmod("list", "--json").output)
    kinds = {(e["kind"], e["name"]) for e in listed["entries"]}
    assert {("model", "mlp-vae"), ("prior", "standard-normal"), ("likelihood", "bernoulli")} <= kinds


@pytest.mark.slow
def test_run_writes_every_output(tmp_path):
    out = tmp_path / "run"
    result = genmod(
        "run", "mlp-vae", "--epochs", 1, "--set", "data.limit=2000", "--out", out, "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    (row,) = metrics(out)
    assert row["epoch"] == 1 and 100 < row["test"]["loss"] < 300 and row["test"]["terms"]["kl"] > 0
    with Image.open(out / "samples_epoch_001.png") as grid:
        assert grid.size == (8 * 30 + 2, 8 * 30 + 2)  # 64 images of 28 px, 2 px padding
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["model_name"] == "mlp-vae"
    assert "test -ELBO" in result.output and "Run summary" in result.output


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (("--set", "train.lr=0"), "train.lr"),
        (("--set", "train.lr=-1e-3"), "train.lr"),
        (("--set", "train.batch_size=0"), "train.batch_size"),
        (("--epochs", "0"), "train.epochs"),
        (("--set", "train.lrr=0.1"), "train.lrr"),
        (("--set", "model.latent_dim=ten"), "model.latent_dim"),
        (("--set", "model.hidden=[10]"), "model.hidden"),
        (("--set", "sampling.n=3"), "sampling"),
        (("--set", "train.lr"), "KEY=VALUE"),
    ],
)
def test_bad_config_exits_2_naming_the_key(tmp_path, args, key):
    out = tmp_path / "never"
    result = genmod("run", "mlp-vae", "--out", out, *args)
    assert result.exit_code == 2, result.output
    assert key in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_unknown_model_suggests_the_close_name():
    result = genmod("run", "mlp-vea")
    assert result.exit_code == 2
    assert "unknown model 'mlp-vea'" in result.output and "mlp-vae" in result.output


def test_config_file_and_typo_hint(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("model:\n  name: mlp-vae\n  latent_dim: 4\ntrain:\n  epoch: 1\n")
    result = genmod("run", "--config", config)
    assert result.exit_code == 2 and "train.epoch" in result.output and "train.epochs" in result.output
    # The file in place of a model's name is read as the same config.
    positional = genmod("run", config)
    assert positional.exit_code == 2 and "train.epochs" in positional.output
    both = genmod("run", "mlp-vae", "--config", config)
    assert both.exit_code == 2 and "names its model" in both.output


@pytest.mark.slow
def test_same_seed_gives_identical_losses(tmp_path):
    for name in ("a", "b"):
        assert small_run(tmp_path / name, "--epochs", 2, "--seed", 7).exit_code == 0
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert small_run(tmp_path / "c", "--epochs", 2, "--seed", 8).exit_code == 0
    assert metrics(tmp_path / "c")[0]["train"] != metrics(tmp_path / "a")[0]["train"]


@pytest.mark.slow
def test_resume_continues_bit_for_bit(tmp_path):
    assert small_run(tmp_path / "whole", "--epochs", 3).exit_code == 0
    assert small_run(tmp_path / "split", "--epochs", 2).exit_code == 0
    resumed = genmod("run", "--resume", tmp_path / "split", "--epochs", 3)
    assert resumed.exit_code == 0, resumed.output
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["model"]
    split = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(whole[k], split[k]) for k in whole)


@pytest.mark.slow
def test_a_checkpoint_written_before_the_loss_scaler_existed_still_resumes(tmp_path):
    out = tmp_path / "run"
    assert small_run(out, "--epochs", 1).exit_code == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state.pop("scaler") == {}  # float32 and bf16 runs have no loss scale
    torch.save(state, out / "checkpoint.pt")
    resumed = genmod("run", "--resume", out, "--epochs", 2)
    assert resumed.exit_code == 0, resumed.output
    assert len(metrics(out)) == 2


def test_non_empty_output_folder_is_refused(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = small_run(out, "--epochs", 1)
    assert result.exit_code == 2 and "not empty" in result.output and "--force" in result.output
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_corrupted_checkpoint_is_refused(tmp_path):
    out = tmp_path / "run"
    assert small_run(out, "--epochs", 1).exit_code == 0
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    result = genmod("run", "--resume", out, "--epochs", 2)
    assert result.exit_code == 1
    assert "corrupted" in result.output and "Traceback" not in result.output


def test_missing_data_names_the_folder_and_files(tmp_path):
    result = genmod("run", "mlp-vae", "--data-dir", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "nowhere" in result.output and "train-images-idx3-ubyte" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_fp16_scales_the_loss_and_resumes_bit_for_bit(tmp_path):
    # float16 is for GPUs without bfloat16; its loss scaler runs the same on the CPU.
    fp16 = ("--set", "train.precision=fp16", "--set", "train.compile=false")
    printed = assert_resume_is_bit_exact(tmp_path / "whole", tmp_path / "split", *SMALL, *fp16, epochs=2)
    assert "fp16" in printed
    # The first steps' scaled gradients overflow float16: the scaler skipped them and backed off.
    scaler = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["scaler"]
    assert scaler["scale"] < 2.0**16
    assert metrics(tmp_path / "whole")[-1]["test"]["loss"] < metrics(tmp_path / "whole")[0]["test"]["loss"]
    evaluated = genmod("eval", tmp_path / "whole", "--k", 10, "--images", 50, "--precision", "fp16")
    assert evaluated.exit_code == 0 and "fp16" in evaluated.output, evaluated.output


@pytest.mark.slow
def test_compiled_bf16_runs_repeat_exactly_and_resume_bit_for_bit(tmp_path):
    fast = ("--set", "train.compile=true", "--set", "train.precision=bf16")
    # A second run's first epoch repeats the first run's, and its resumed epochs too.
    printed = assert_resume_is_bit_exact(tmp_path / "whole", tmp_path / "split", *SMALL, *fast, epochs=3)
    assert "bf16, compiled" in printed
    fp32 = small_run(tmp_path / "fp32", "--epochs", 1, "--set", "train.precision=fp32")
    assert fp32.exit_code == 0
    # Another arithmetic, the same training: within a nat, not bit-identical.
    for a, b in zip(metrics(tmp_path / "fp32"), metrics(tmp_path / "whole")[:1], strict=True):
        assert a["test"]["loss"] != b["test"]["loss"] and abs(a["test"]["loss"] - b["test"]["loss"]) < 2.0
