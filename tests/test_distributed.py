"""Two processes on the CPU (gloo) follow the single-process run with the same global batch."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import losses, metrics


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "genmod", "run", "mlp-vae", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


COMMON = ("--epochs", 2, "--set", "data.limit=3000", "--set", "train.batch_size=100", "--device", "cpu")


@pytest.fixture(scope="module")
def launched(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> tuple[Path, subprocess.CompletedProcess]:
    """COMMON in two processes: its folder and what the launch printed (shared by the tests
    below; set up before the per-test isolation, so it names the data folder itself)."""
    out = tmp_path_factory.mktemp("distributed") / "two"
    done = run(*COMMON, "--data-dir", data_dir, "--out", out, "--nproc", 2)
    assert done.returncode == 0, done.stderr
    return out, done


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(launched, tmp_path):
    single = run(*COMMON, "--out", tmp_path / "one")
    assert single.returncode == 0, single.stderr
    folder, double = launched

    one, two = metrics(tmp_path / "one"), metrics(folder)
    assert len(two) == 2  # rank 0 alone wrote the metrics
    for a, b in zip(one, two, strict=True):
        for key in ("train", "test"):
            assert abs(a[key]["loss"] - b[key]["loss"]) / a[key]["loss"] < 0.02, (key, a[key], b[key])
    assert two[-1]["test"]["loss"] < two[0]["train"]["loss"]
    assert double.stdout.count("Run summary") == 1 and "error" not in double.stderr.lower()
    assert "on cpu, 2 processes (gloo)" in double.stdout and " processes (" not in single.stdout


def test_an_error_in_the_processes_of_a_launch_is_one_line_of_the_launcher(tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("kept")
    refused = run("--epochs", 1, "--device", "cpu", "--out", taken, "--nproc", 2)
    # Rank 0 refuses the folder; rank 1, whose peer is gone, adds no traceback.
    assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0, refused.stderr
    assert "not empty" in refused.stderr and "--force" in refused.stderr
    assert (taken / "notes.txt").read_text() == "kept"


@pytest.mark.slow
def test_distributed_run_resumes_with_the_same_number_of_processes(launched, tmp_path):
    out = tmp_path / "two"
    shutil.copytree(launched[0], out)  # the shared run stays as it is
    resumed = subprocess.run(
        [sys.executable, "-m", "genmod", "run", "--resume", str(out), "--epochs", "3", "--nproc", "2"],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert [row["epoch"] for row in losses(out)] == [1, 2, 3]
    alone = subprocess.run(
        [sys.executable, "-m", "genmod", "run", "--resume", str(out), "--epochs", "4"],
        capture_output=True,
        text=True,
    )
    assert alone.returncode == 1 and "resume it with as many" in alone.stderr


def _node(rank: int, port: int, folder: Path, *args: object) -> subprocess.Popen:
    """One "machine" of a two-node torchrun launch on localhost, working in its own folder."""
    folder.mkdir(exist_ok=True)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
    launcher += ["--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(port)]
    return subprocess.Popen(
        [*launcher, "-m", "genmod", "run", *map(str, args)],
        cwd=folder,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs: torchrun's workers outlive a killed launcher."""
    children = [
        int(c)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for c in (task / "children").read_text().split()
    ]
    return [*children, *(grandchild for child in children for grandchild in _descendants(child))]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_a_two_node_run_killed_mid_training_resumes_from_rank_0s_folder_alone(tmp_path):
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    settings = ("--set", "data.limit=2000", "--device", "cpu")
    port = _free_port()
    first = [
        _node(rank, port, folder, "mlp-vae", "--epochs", 20, "--out", "run", *settings)
        for rank, folder in enumerate(nodes)
    ]
    metrics_file = nodes[0] / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics_file.is_file() and metrics_file.read_text().count("\n") >= 2):
        assert time.monotonic() < deadline and all(p.poll() is None for p in first), [
            p.communicate() for p in first
        ]
        time.sleep(0.5)
    for process in first:  # the machine is lost: its launcher and its worker die at once
        for pid in [process.pid, *_descendants(process.pid)]:
            os.kill(pid, signal.SIGKILL)
        process.wait()
    assert not (nodes[1] / "run").exists()  # only rank 0 writes: the other machine has no copy
    done = len(metrics(nodes[0] / "run"))

    port = _free_port()
    again = [
        _node(rank, port, folder, "--resume", "run", "--epochs", done + 1)
        for rank, folder in enumerate(nodes)
    ]
    outputs = [p.communicate(timeout=300) for p in again]
    assert [p.returncode for p in again] == [0, 0], outputs
    assert f"resuming mlp-vae from epoch {done + 1} on cpu, 2 processes" in outputs[0][0]
    assert [row["epoch"] for row in metrics(nodes[0] / "run")] == list(range(1, done + 2))
    assert not (nodes[1] / "run").exists()
