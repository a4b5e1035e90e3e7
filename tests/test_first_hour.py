"""The first hour with genmod: fast start-up, 80-column output, progress, resume bookkeeping,
plain wording, remembered plugin files and errors that name their cause."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_plugins import LAPLACE_PLUGIN

from genmod.errors import DataError, one_line
from genmod.evaluation import importance_sampled_nll
from helpers import genmod, optional, small_run


def test_help_and_version_do_not_import_torch():
    """A guard, not a timing: torch and the plugins take seconds to import, so the commands
    that need neither must not import them."""
    probe = textwrap.dedent(
        """
        import sys
        from typer.testing import CliRunner
        from genmod.cli import app
        for args in (["--version"], ["--help"], ["run", "--help"]):
            assert CliRunner().invoke(app, args).exit_code == 0
        print(sorted(m for m in ("torch", "torchvision", "matplotlib", "genmod_zoo") if m in sys.modules))
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def assert_fits_80_columns(output: str) -> None:
    too_wide = [line for line in output.splitlines() if len(line) > 80]
    assert not too_wide, too_wide


@pytest.mark.parametrize(
    "args",
    [("--help",), ("list",), ("plugins",), ("info", "train"), ("info", "mlp-vae"), ("info", "vampprior")],
    ids=lambda a: " ".join(a),
)
def test_tables_and_help_fit_80_columns_and_keep_names_whole(args):
    result = genmod(*args, columns=80)
    assert result.exit_code == 0, result.output
    assert_fits_80_columns(result.output)
    if args == ("list",):
        for name in ("continuous-bernoulli", "genmod-mlp-vae", "standard-normal", "fashion-mnist"):
            assert name in result.output
        from importlib.metadata import version

        assert f"genmod-zoo {version('genmod-zoo')}" in result.output  # the version, at 80 columns too
    if args == ("info", "vampprior"):
        conv = genmod("info", "conv", columns=200).output
        assert "per entry of channels" in conv and "Two stride-2" not in conv  # as its option says
    if args == ("plugins",):
        assert "genmod-mlp-vae" in result.output


def test_a_run_its_table_and_eval_fit_80_columns(tmp_path, data_dir):
    runs = tmp_path / "runs"
    out = runs / "mlp-vae-20261125-174512-with-a-long-name"
    trained = small_run(
        out, "--epochs", 1, "--set", "data.validation=200", "--set", "data.binarize=dynamic", columns=80
    )
    assert trained.exit_code == 0, trained.output
    assert_fits_80_columns(trained.output.replace(str(out), "RUN"))  # a path is as long as it is
    listing = genmod("runs", runs, columns=80)
    assert_fits_80_columns(listing.output)
    assert out.name in listing.output  # whole, so that it can be copied
    evaluated = genmod("eval", out, "--k", 5, "--images", 20, columns=80)
    assert evaluated.exit_code == 0 and "/20 images" not in evaluated.output  # no bar when not a terminal
    assert_fits_80_columns(evaluated.output.replace(str(out), "RUN"))


def test_the_evaluator_reports_progress(registry):
    from genmod.config_loader import resolve_run_config
    from genmod.runner import build_model

    model = build_model(resolve_run_config(registry, model="mlp-vae"), registry, (1, 28, 28))
    seen: list[int] = []
    importance_sampled_nll(
        model, torch.rand(10, 1, 28, 28).round(), k=8, max_rows=16, on_progress=seen.append
    )
    assert seen == sorted(seen) and seen[-1] >= 10 and len(seen) == 5


@pytest.mark.slow
def test_resume_records_the_new_target_and_a_finished_run_says_so(tmp_path, data_dir):
    out = tmp_path / "run"
    assert small_run(out, "--epochs", 1).exit_code == 0
    assert genmod("run", "--resume", out, "--epochs", 2).exit_code == 0
    assert "epochs: 2" in (out / "config.yaml").read_text()
    assert "train.epochs 1 -> 2" in (out / "changes.log").read_text()
    listing = genmod("runs", tmp_path).output
    assert "2/2" in listing
    before = (out / "checkpoint.pt").stat().st_mtime_ns
    again = genmod("run", "--resume", out)
    assert again.exit_code == 0
    assert (
        "is complete: 2 epochs" in again.output and f"genmod run --resume {out} --epochs 12" in again.output
    )
    assert (out / "checkpoint.pt").stat().st_mtime_ns == before  # nothing retrained


@pytest.mark.parametrize("command", ["eval", "sample", "reconstruct", "manifold"])
def test_commands_on_a_run_folder_say_what_is_wrong_with_it(tmp_path, command):
    missing = genmod(command, tmp_path / "nothing")
    assert missing.exit_code == 2 and "does not exist" in missing.output and "resume" not in missing.output
    (tmp_path / "empty").mkdir()
    empty = genmod(command, tmp_path / "empty")
    assert empty.exit_code == 2 and "is not a genmod run folder" in empty.output


@pytest.mark.slow
def test_a_run_remembers_its_plugin_files(tmp_path, data_dir):
    plugin = tmp_path / "laplace.py"
    plugin.write_text(LAPLACE_PLUGIN)
    out = tmp_path / "run"
    assert small_run(out, "--epochs", 1, "--plugin", plugin, "--set", "model.prior=laplace").exit_code == 0
    assert str(plugin) in (out / "config.yaml").read_text()
    assert genmod("sample", out, "-n", 4).exit_code == 0  # no --plugin needed
    assert genmod("eval", out, "--k", 2, "--images", 4).exit_code == 0
    assert genmod("run", "--resume", out, "--epochs", 2).exit_code == 0

    moved = tmp_path / "elsewhere.py"
    shutil.move(plugin, moved)
    gone = genmod("sample", out)
    assert gone.exit_code == 2 and str(plugin) in gone.output and "--plugin" in gone.output
    assert genmod("sample", out, "--plugin", moved).exit_code == 0


def test_a_checkpoint_holding_python_objects_is_refused_in_plain_words(tmp_path, data_dir):
    out = tmp_path / "run"
    assert small_run(out, "--epochs", 1).exit_code == 0
    torch.save({"format": "genmod-checkpoint", "payload": Path("x")}, out / "checkpoint.pt")
    result = genmod("sample", out, "--checkpoint", "last")
    (line,) = result.output.strip().splitlines()
    assert "holds Python objects besides tensors" in line and "not loaded, for safety" in line
    assert "PyTorch 2.6" not in line


def test_images_with_non_finite_pixels_are_refused_when_loaded(tmp_path):
    images = torch.rand(50, 1, 8, 8)
    images[17, 0, 3, 3] = float("nan")
    torch.save({"train": images, "test": torch.rand(10, 1, 8, 8)}, tmp_path / "x.pt")
    result = genmod(
        "run", "mlp-vae", "--set", "data.name=tensor-file", "--set", f"data.root={tmp_path / 'x.pt'}",
        "--set", "train.batch_size=10", "--out", tmp_path / "run",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "image 17 of the train split" in result.output and "non-finite" in result.output
    assert isinstance(DataError(""), Exception)


def test_an_error_names_its_cause_even_after_an_empty_first_line():
    error = RuntimeError(
        "Error downloading train-images-idx3-ubyte.gz:\nTried mirror, got:\n<urlopen error down>\n"
    )
    assert one_line(error) == (
        "RuntimeError: Error downloading train-images-idx3-ubyte.gz: Tried mirror, got: <urlopen error down>"
    )


def test_config_keys_are_found_across_sections_and_types_read_plainly():
    result = genmod("run", "mlp-vae", "--set", "latent_dim=10")
    assert result.exit_code == 2 and "did you mean 'model.latent_dim'?" in result.output
    info = genmod("info", "mlp-vae").output
    assert "list of positive integers" in info and "Annotated" not in info
    assert "positive integer" in genmod("info", "train").output


@pytest.mark.slow
def test_the_tensorboard_logger_says_where_it_writes(tmp_path, data_dir):
    optional("tensorboard")
    out = tmp_path / "run"
    result = small_run(out, "--epochs", 1, "--logger", "tensorboard")
    assert result.exit_code == 0 and f"TensorBoard events in {out / 'tensorboard'}" in result.output.replace(
        "\n", ""
    )


def test_list_json_and_table_name_plugins_alike():
    table = genmod("list", "--kind", "model").output
    models = json.loads(genmod("list", "--json", "--kind", "model").output)["entries"]
    assert all(entry["plugin"] in table for entry in models)
    assert os.environ.get("GENMOD_PLUGINS") is None


@pytest.mark.parametrize(
    "sets",
    [
        ("model.prior.components=5", "model.prior=mixture"),
        ("model.prior=mixture", "model.prior.components=5"),
    ],
    ids=["options first", "name first"],
)
def test_set_keeps_the_options_of_a_component_in_any_order(registry, sets):
    from genmod.config_loader import resolve_run_config

    config = resolve_run_config(registry, model="mlp-vae", overrides=list(sets))
    assert config.model.prior.name == "mixture" and config.model.prior.options["components"] == 5
    with pytest.raises(Exception, match="componets"):
        resolve_run_config(
            registry, model="mlp-vae", overrides=["model.prior.componets=5", "model.prior=mixture"]
        )


@pytest.mark.slow
def test_the_readme_python_snippet_runs_and_its_samples_plot(data_dir):
    """The README's snippet as written, made small: 1 epoch of 2,000 images, k=10."""
    import matplotlib

    matplotlib.use("Agg")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    small = snippet.replace(
        "train__epochs=5, data__validation=10000", "train__epochs=1, data__limit=2000, data__validation=500"
    ).replace("k=1000", "k=10")
    assert small != snippet and "plt.imshow" in small
    namespace: dict[str, object] = {}
    exec(compile(small, "README.md", "exec"), namespace)  # noqa: S102 - the README is ours
    assert not namespace["images"].requires_grad


@pytest.mark.slow
def test_a_relative_data_dir_travels_with_the_run(tmp_path, data_dir, monkeypatch):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(here)
    relative = os.path.relpath(data_dir, here)
    trained = small_run(Path("run"), "--epochs", 1, "--data-dir", relative)
    assert trained.exit_code == 0, trained.output
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("GENMOD_DATA_DIR")
    run = here / "run"
    assert genmod("eval", run, "--k", 2, "--images", 5).exit_code == 0
    assert genmod("reconstruct", run).exit_code == 0
    assert genmod("run", "--resume", run, "--epochs", 2).exit_code == 0
    import genmod as api

    assert len(api.dataset(run).test) == 10000
    assert api.evaluate(run, k=2, limit=5, data_dir=data_dir).images == 5


@pytest.mark.slow
def test_a_run_whose_data_folder_is_gone_reads_genmod_data_dir_or_data_dir(tmp_path, data_dir):
    run = tmp_path / "run"
    assert small_run(run, "--epochs", 1).exit_code == 0
    config = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(config.replace("root: null", "root: /nowhere/data"))
    assert genmod("eval", run, "--k", 2, "--images", 5).exit_code == 0  # $GENMOD_DATA_DIR
    assert genmod("run", "--resume", run, "--epochs", 2, "--data-dir", data_dir).exit_code == 0
    assert f"root: {data_dir}" in (run / "config.yaml").read_text()


def test_messages_point_to_the_fix(tmp_path, data_dir):
    recipe = Path(__file__).resolve().parents[1] / "configs" / "mlp-vae.yaml"
    on_a_file = genmod("eval", recipe)
    assert on_a_file.exit_code == 2 and f"genmod run --config {recipe}" in on_a_file.output
    near = genmod("run", "mlp-vae", "--data-dir", data_dir.parent, "--out", tmp_path / "r")
    assert near.exit_code != 0 and f"did you mean {data_dir}?" in near.output
    plugin = tmp_path / "onearg.py"
    plugin.write_text(
        "from genmod import ComponentSpec, hookimpl\n"
        "@hookimpl\ndef register_priors(register):\n"
        "    register(ComponentSpec(name='one-arg', build=lambda options: None))\n"
    )
    wrong = genmod(
        "run", "mlp-vae", "--plugin", plugin, "--set", "model.prior=one-arg", "--out", tmp_path / "w"
    )
    assert wrong.exit_code == 2 and "must take (options, context)" in wrong.output


def test_ctrl_c_is_reported_not_called_an_error():
    from genmod import cli
    from genmod.runner import Interrupted

    @cli._user_errors
    def stopped():
        raise Interrupted("stopped; training up to epoch 3 is saved. Continue with:\n  genmod run --resume r")

    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    app.command()(stopped)
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 130 and "error" not in result.output
    assert result.output.splitlines()[-1] == "  genmod run --resume r"


def test_the_progress_bar_shows_no_loss_before_the_first_step():
    from rich.console import Console

    from genmod.progress import RunReporter

    console = Console(record=True, force_terminal=True, width=100)
    reporter = RunReporter(console)
    reporter._progress.start()
    reporter.epoch_started(1, 30, 600)
    reporter._progress.refresh()
    first = console.export_text()
    reporter.step(1, 543.21)
    reporter._progress.refresh()
    reporter._progress.stop()
    assert "loss -" in first and "nan" not in first
    assert "loss 543.21" in console.export_text()


@pytest.mark.slow
def test_compiled_runs_print_no_cuda_warning_on_a_machine_without_a_gpu(tmp_path, data_dir):
    done = subprocess.run(
        [sys.executable, "-m", "genmod", "run", "mlp-vae", "--epochs", "1", "--device", "cpu",
         "--set", "data.limit=200", "--set", "train.compile=true", "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "No CUDA runtime" not in done.stdout + done.stderr


def test_a_failure_line_is_never_broken_inside_at_80_columns(tmp_path):
    plugin = tmp_path / "a-plugin-file-with-a-rather-long-name-to-push-the-message-past-80.py"
    plugin.write_text("raise ImportError('cannot import name flux_capacitor from a module far away')\n")
    listed = genmod("list", "--plugin", plugin, columns=80)
    (line,) = [line for line in listed.output.splitlines() if "failed to load" in line]
    assert line.endswith("cannot import name flux_capacitor from a module far away")  # whole, one line


@pytest.mark.slow
def test_the_readme_plugin_in_20_lines_registers_a_prior_that_trains(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    plugin_source = next(block for block in readme.split("```python\n")[1:] if "my_laplace.py" in block)
    plugin = tmp_path / "my_laplace.py"
    plugin.write_text(plugin_source.split("```", 1)[0])
    assert len(plugin.read_text().splitlines()) <= 20
    listed = genmod("list", "--kind", "prior", "--plugin", plugin)
    assert "laplace" in listed.output and str(plugin) in listed.output
    trained = genmod(
        "run", "mlp-vae", "--plugin", plugin, "--set", "model.prior=laplace", "--epochs", 1,
        "--set", "data.limit=500", "--out", tmp_path / "run", "--device", "cpu",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output


def _commands(group, prefix=()):
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def _every_command():
    import typer.main

    from genmod.cli import app

    return list(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("command", _every_command(), ids=" ".join)
def test_every_command_documents_its_arguments_and_refuses_unknown_ones(command):
    helped = genmod(*command, "--help")
    assert helped.exit_code == 0 and "Usage" in helped.output
    refused = genmod(*command, "--no-such-option")
    assert refused.exit_code == 2 and "No such option" in refused.output
