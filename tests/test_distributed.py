"""Two processes on the CPU (gloo) follow the single-process run with the same global batch."""

import os
import subprocess
import sys

from helpers import losses, metrics


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "genmod", "run", "mlp-vae", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    common = ("--epochs", 2, "--set", "data.limit=3000", "--set", "train.batch_size=100", "--device", "cpu")
    single = run(*common, "--out", tmp_path / "one")
    assert single.returncode == 0, single.stderr
    double = run(*common, "--out", tmp_path / "two", "--nproc", 2)
    assert double.returncode == 0, double.stderr

    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert len(two) == 2  # rank 0 alone wrote the metrics
    for a, b in zip(one, two, strict=True):
        for key in ("train", "test"):
            assert abs(a[key]["loss"] - b[key]["loss"]) / a[key]["loss"] < 0.02, (key, a[key], b[key])
    assert two[-1]["test"]["loss"] < two[0]["train"]["loss"]
    assert double.stdout.count("Run summary") == 1 and "error" not in double.stderr.lower()
    assert "on cpu, 2 processes (gloo)" in double.stdout and " processes (" not in single.stdout


def test_distributed_run_resumes_with_the_same_number_of_processes(tmp_path):
    out = tmp_path / "two"
    common = ("--set", "data.limit=2000", "--device", "cpu", "--nproc", 2)
    assert run("--epochs", 1, "--out", out, *common).returncode == 0
    resumed = subprocess.run(
        [sys.executable, "-m", "genmod", "run", "--resume", str(out), "--epochs", "2", "--nproc", "2"],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert [row["epoch"] for row in losses(out)] == [1, 2]
    alone = subprocess.run(
        [sys.executable, "-m", "genmod", "run", "--resume", str(out), "--epochs", "3"],
        capture_output=True,
        text=True,
    )
    assert alone.returncode == 1 and "resume it with as many" in alone.stderr
