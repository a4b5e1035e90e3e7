"""Bad input never gives a traceback or a half-written folder; interrupted work is never lost."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from genmod.config_loader import resolve_run_config
from genmod.errors import CheckpointError, DataError
from helpers import checkpoint_epoch, cli, genmod, losses, small_run

BROKEN_PLUGIN = "raise ImportError('cannot import name flux_capacitor')\n"

NAN_PLUGIN = """
import torch
from genmod import ComponentSpec, Likelihood, hookimpl
from torch.distributions import Bernoulli, Independent


class FlakyLikelihood(Likelihood):
    '''Bernoulli, until the 31st training step: from then on its log-density is NaN.'''

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, params):
        if torch.is_grad_enabled():  # training steps only, not the probe or evaluation
            self.calls += 1
            if self.calls > 30:
                params = params * float("nan")
        return Independent(Bernoulli(logits=params, validate_args=False), 3)


@hookimpl
def register_likelihoods(register):
    register(ComponentSpec(name="flaky", build=lambda options, ctx: FlakyLikelihood()))
"""


def idx_copy(tmp_path: Path, data_dir: Path, damage) -> Path:
    """A data folder linking to the real MNIST, with the training images replaced by ``damage(bytes)``."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for source in (data_dir / "MNIST" / "raw").iterdir():
        (raw / source.name).symlink_to(source)
    images = raw / "train-images-idx3-ubyte"
    content = images.read_bytes()
    images.unlink()
    images.write_bytes(damage(content))
    return tmp_path / "data"


def trained_run(tmp_path: Path, name: str = "done", *extra) -> Path:
    out = tmp_path / name
    assert small_run(out, "--epochs", 1, *extra).exit_code == 0
    return out


CASES = {
    "unknown model": (lambda t, d: ["run", "mlp-vea"], "unknown model 'mlp-vea': did you mean 'mlp-vae'?"),
    "unknown config key": (
        lambda t, d: ["run", "mlp-vae", "--set", "train.lrr=1"],
        "unknown config key 'train.lrr'",
    ),
    "wrong type": (
        lambda t, d: ["run", "mlp-vae", "--set", "train.batch_size=many"],
        "'train.batch_size' = 'many'",
    ),
    "lr <= 0": (
        lambda t, d: ["run", "mlp-vae", "--set", "train.lr=0"],
        "'train.lr' = 0: Input should be greater than 0",
    ),
    "data folder missing": (lambda t, d: ["run", "mlp-vae", "--data-dir", t / "nowhere"], "not found in"),
    "IDX file truncated": (
        lambda t, d: ["run", "mlp-vae", "--data-dir", idx_copy(t, d, lambda b: b[:5000])],
        "train-images-idx3-ubyte is truncated: 5000 bytes, expected 47040016",
    ),
    "IDX wrong magic number": (
        lambda t, d: ["run", "mlp-vae", "--data-dir", idx_copy(t, d, lambda b: b"\x00\x00\x08\x01" + b[4:])],
        "not an MNIST IDX file",
    ),
    "data.limit > dataset": (
        lambda t, d: ["run", "mlp-vae", "--set", "data.limit=70000"],
        "data.limit = 70000 is larger",
    ),
    "batch > dataset": (
        lambda t, d: ["run", "mlp-vae", "--set", "data.limit=50", "--set", "train.batch_size=100"],
        "train.batch_size = 100 is larger than the 50 training images",
    ),
    "output folder not empty": (lambda t, d: ["run", "mlp-vae", "--out", trained_run(t)], "is not empty"),
    "output folder not writable": (
        lambda t, d: ["run", "mlp-vae", "--out", write(t / "a-file", "") / "run"],
        "cannot write to output folder",
    ),
    "resume without checkpoint": (
        lambda t, d: ["run", "--resume", (t / "empty").mkdir() or t / "empty"],
        "is not a genmod run folder",
    ),
    "checkpoint of another model": (
        lambda t, d: [
            "run",
            "--resume",
            shutil.copy(trained_run(t, "mlp") / "checkpoint.pt", trained_run_beta(t) / "checkpoint.pt")
            and t / "beta",
        ],
        "is a checkpoint of model 'mlp-vae', not 'beta-vae'",
    ),
    "plugin raises at import": (
        lambda t, d: [
            "run",
            "mlp-vae",
            "--plugin",
            write(t / "broken.py", BROKEN_PLUGIN),
            "--set",
            "model.prior=broken-prior",
        ],
        "broken.py failed to load: ImportError: cannot import name flux_capacitor",
    ),
    "cuda without a GPU": (
        lambda t, d: ["run", "mlp-vae", "--device", "cuda"],
        "device 'cuda' is not available",
    ),
}


def trained_run_beta(tmp_path: Path) -> Path:
    out = tmp_path / "beta"
    assert (
        genmod(
            "run", "beta-vae", "--out", out, "--epochs", 1, "--set", "data.limit=500", "--device", "cpu"
        ).exit_code
        == 0
    )
    return out


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_line_and_leaves_no_trace(case, tmp_path, data_dir):
    if case == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    build_args, message = CASES[case]
    args = build_args(tmp_path, data_dir)
    before = snapshot(tmp_path)
    result = genmod(*args, *([] if "--out" in args or "--resume" in args else ["--out", tmp_path / "new"]))
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert snapshot(tmp_path) == before  # nothing written, nothing overwritten


def test_broken_plugin_is_named_when_its_model_is_asked_for(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "genmod_flux-1.0.dist-info").mkdir(parents=True)
    (site / "genmod_flux.py").write_text(BROKEN_PLUGIN)
    (site / "genmod_flux-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: genmod-flux\nVersion: 1.0\n"
    )
    (site / "genmod_flux-1.0.dist-info" / "entry_points.txt").write_text("[genmod]\nflux = genmod_flux\n")
    monkeypatch.syspath_prepend(str(site))
    result = genmod("run", "flux-vae")
    assert result.exit_code == 2
    assert (
        "unknown model 'flux-vae'" in result.output and "plugin 'genmod-flux' failed to load" in result.output
    )


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    plugin = write(tmp_path / "flaky.py", NAN_PLUGIN)
    out = tmp_path / "run"
    result = genmod(
        "run",
        "mlp-vae",
        "--plugin",
        plugin,
        "--set",
        "model.likelihood=flaky",
        "--set",
        "data.limit=2000",
        "--epochs",
        3,
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert result.exit_code == 1
    assert "loss became nan at epoch 2, step 11" in result.output  # 20 steps an epoch
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert len(losses(out)) == 1


def assert_same_run(a: Path, b: Path) -> None:
    assert losses(a) == losses(b)
    wa = torch.load(a / "checkpoint.pt", weights_only=True)["model"]
    wb = torch.load(b / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


RUN = ("run", "mlp-vae", "--epochs", 3, "--set", "data.limit=20000", "--device", "cpu")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """The folder of RUN never stopped (shared: each signal test compares with it). Set up
    before the per-test isolation (conftest), so it names the data folder itself."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert cli(*RUN, "--data-dir", data_dir, "--out", out).wait() == 0
    return out


def start_into_second_epoch(out: Path) -> subprocess.Popen:
    """Start the 3-epoch run and return once it is a little way past its first checkpoint."""
    process = cli(*RUN, "--out", out)
    while checkpoint_epoch(out / "checkpoint.pt") < 1:
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    time.sleep(0.3)
    return process


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical(uninterrupted, tmp_path):
    killed = tmp_path / "killed"
    process = start_into_second_epoch(killed)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint_epoch(killed / "checkpoint.pt") < 3
    resumed = cli("run", "--resume", killed)
    assert resumed.wait() == 0, resumed.stderr.read()
    assert_same_run(uninterrupted, killed)


@pytest.mark.slow
def test_sigterm_checkpoints_mid_epoch_and_prints_the_resume_command(uninterrupted, tmp_path):
    stopped = tmp_path / "stopped"
    process = start_into_second_epoch(stopped)
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 130
    message = process.stderr.read()
    assert f"genmod run --resume {stopped}" in message and "Traceback" not in message
    state = torch.load(stopped / "checkpoint.pt", weights_only=True)
    assert state["position"] is not None or state["epoch"] == 3  # stopped inside an epoch, as asked
    resumed = cli("run", "--resume", stopped)
    assert resumed.wait() == 0, resumed.stderr.read()
    assert_same_run(uninterrupted, stopped)


@pytest.mark.slow
def test_a_second_signal_stops_at_once_keeping_the_last_checkpoint(tmp_path):
    stopped = tmp_path / "stopped"
    process = start_into_second_epoch(stopped)
    # Two different signals, so that the kernel cannot merge them into one pending signal.
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 130
    message = process.stderr.read()
    assert "stopped at once" in message and "Traceback" not in message
    assert checkpoint_epoch(stopped / "checkpoint.pt") >= 1  # a complete checkpoint, never a torn one


def test_a_failure_during_set_up_still_leaves_the_process_group(tmp_path, monkeypatch):
    """The group is joined and left at one level: an error while the run is set up must not
    leave it open (its peers would wait for this process forever)."""
    from genmod import distributed, runner
    from genmod.plugins import load_registry

    calls = []
    monkeypatch.setattr(runner.distributed, "topology_from_env", lambda: distributed.Topology(world_size=2))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(
        distributed.dist, "init_process_group", lambda backend: calls.append(("init", backend))
    )
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: calls.append(("destroy",)))
    registry = load_registry()
    config = resolve_run_config(
        registry, model="mlp-vae", overrides=["data.root=/nowhere", "train.device=cpu"]
    )
    with pytest.raises(DataError):
        runner.train(config, registry, out_dir=tmp_path / "run")
    assert calls == [("init", "gloo"), ("destroy",)]


def test_checkpoint_loads_weights_only_and_refuses_foreign_files(tmp_path):
    out = trained_run(tmp_path)
    torch.save({"weights": torch.zeros(3)}, out / "checkpoint.pt")
    result = genmod("run", "--resume", out)
    assert result.exit_code == 1 and "is not a genmod checkpoint" in result.output
    (out / "checkpoint.pt").write_bytes(b"\x80\x04not a zip at all")
    result = genmod("run", "--resume", out)
    assert result.exit_code == 1 and "truncated, corrupted or not a genmod checkpoint" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_interrupted_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    from genmod import checkpoint

    out = trained_run(tmp_path)
    good = (out / "checkpoint.pt").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", crash)
    with pytest.raises(CheckpointError, match="the previous checkpoint.pt is kept"):
        checkpoint.save_checkpoint(out / "checkpoint.pt", {"epoch": 9})
    assert (out / "checkpoint.pt").read_bytes() == good
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".genmod.lock"]


SLOW_EVALUATION_PLUGIN = """
import os, time
import torch
from pathlib import Path
from torch.distributions import Bernoulli, Independent
from genmod import ComponentSpec, Likelihood, hookimpl


class SlowToEvaluate(Likelihood):
    '''Bernoulli; with $SLOW_MARK set, each batch of the end-of-epoch evaluation takes a second
    and the first one leaves that mark.'''

    def forward(self, params):
        mark = os.environ.get("SLOW_MARK")
        if mark and torch.is_inference_mode_enabled():
            Path(mark).touch()
            time.sleep(1)
        return Independent(Bernoulli(logits=params, validate_args=False), 3)


@hookimpl
def register_likelihoods(register):
    register(ComponentSpec(name="slow-eval", build=lambda options, ctx: SlowToEvaluate()))
"""


@pytest.mark.slow
def test_sigterm_during_the_end_of_epoch_evaluation_stops_at_once_keeping_the_trained_epoch(tmp_path):
    plugin = write(tmp_path / "slow.py", SLOW_EVALUATION_PLUGIN)
    run = ("run", "mlp-vae", "--epochs", 1, "--set", "data.limit=500", "--device", "cpu", "--plugin", plugin,
           "--set", "model.likelihood=slow-eval", "--set", "train.eval_batch_size=100",
           "--set", "train.sample_epochs=[]")  # fmt: skip
    whole, stopped, mark = tmp_path / "whole", tmp_path / "stopped", tmp_path / "evaluating"
    assert cli(*run, "--out", whole).wait() == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "genmod", *map(str, run), "--out", str(stopped)],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "SLOW_MARK": str(mark)},
    )  # fmt: skip
    while not mark.exists():
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 130
    assert time.monotonic() - started < 10  # not the 100 s the evaluation would take
    assert "genmod run --resume" in process.stderr.read()
    resumed = cli("run", "--resume", stopped)  # evaluates the trained epoch, at full speed
    assert resumed.wait() == 0, resumed.stderr.read()
    assert_same_run(whole, stopped)
