"""Data beyond memory: 8-bit images stay uint8, `genmod data pack` writes shards, and
data.name streaming trains on them across processes and resumes at the same sample."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from genmod.config import DataConfig
from genmod.data import load_data
from helpers import genmod, losses, metrics, optional

IMAGES = 2000


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """The first 2,000 MNIST training images (and the test set) in shards of half a megabyte."""
    optional("streaming")
    out = tmp_path_factory.mktemp("packed") / "mnist"
    result = genmod(
        "data", "pack", "mnist", out, "--data-dir", data_dir, "--limit", IMAGES, "--shard-mb", 0.5
    )
    assert result.exit_code == 0, result.output
    return out


# Two processes train two epochs on the packed shards, checkpointing every 7 steps.
STREAMED = ("mlp-vae", "--epochs", 2, "--device", "cpu", "--nproc", 2, "--set", "data.name=streaming",
            "--set", "train.checkpoint_every=7")  # fmt: skip


@pytest.fixture(scope="module")
def streamed(packed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of an uninterrupted STREAMED run (shared: the slow tests compare with it)."""
    out = tmp_path_factory.mktemp("streamed") / "run"
    done = run(*STREAMED, "--data-dir", packed, "--out", out)
    assert done.returncode == 0, done.stderr
    assert "2 processes" in done.stdout
    return out


def run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "genmod", "run", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_8_bit_images_are_kept_as_uint8_and_scaled_per_batch(registry, data_dir):
    config = DataConfig(name="mnist", binarize="dynamic", validation=1000)
    data = load_data(registry.dataset("mnist"), config, torch.device("cpu"))
    assert data.train.dtype == data.test.dtype == data.validation.dtype == torch.uint8
    assert set(data.test.unique().tolist()) == {0, 255}  # binarized once, stored as 0 and 255
    floats = data.as_float()
    assert floats.test.dtype == torch.float32 and set(floats.test.unique().tolist()) == {0.0, 1.0}
    assert floats.train.max() == 1.0 and data.train.element_size() * 4 == floats.train.element_size() * 1


def test_pack_writes_shards_and_an_index_of_their_shape_and_counts(packed):
    index = json.loads((packed / "genmod.json").read_text())
    assert index == {"shape": [1, 28, 28], "images": {"train": IMAGES, "test": 10000}, "source": "mnist"}
    assert len(list((packed / "train").glob("*.mds"))) >= 3


def test_pack_refuses_an_existing_folder(packed):
    result = genmod("data", "pack", "mnist", packed)
    assert result.exit_code == 2 and "already exists" in result.output


def test_streaming_refuses_what_needs_the_training_images_in_memory(packed, tmp_path):
    result = genmod(
        "run", "mlp-vae", "--set", "data.name=streaming", "--data-dir", packed,
        "--set", "data.validation=100", "--out", tmp_path / "run",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "data.validation needs the training images in memory" in result.output


@pytest.mark.slow
def test_a_packed_set_trains_with_two_processes_like_the_same_images_in_memory(streamed, tmp_path):
    in_memory = run("mlp-vae", "--epochs", 2, "--device", "cpu", "--nproc", 2, "--set", f"data.limit={IMAGES}",
                    "--out", tmp_path / "m")  # fmt: skip
    assert in_memory.returncode == 0, in_memory.stderr
    for a, b in zip(metrics(streamed), metrics(tmp_path / "m"), strict=True):
        for split in ("train", "test"):  # another order of the same images: equal within noise
            assert abs(a[split]["loss"] - b[split]["loss"]) / b[split]["loss"] < 0.03, (split, a, b)
    assert metrics(streamed)[1]["train"]["loss"] < metrics(streamed)[0]["train"]["loss"]


@pytest.mark.slow
def test_a_streamed_run_killed_mid_epoch_resumes_at_the_same_sample(packed, streamed, tmp_path):
    """Killed right after a mid-epoch checkpoint, the resumed run's losses are those of the
    run that was never stopped: it went on from the very sample it had reached."""
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "genmod", "run", *map(str, STREAMED), "--data-dir", str(packed)]
    launch = subprocess.Popen(
        [*command, "--out", str(out)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while not (out / "checkpoint.pt").is_file():  # the first is written at step 7 of epoch 1
        assert time.monotonic() < deadline and launch.poll() is None
        time.sleep(0.05)
    os.killpg(launch.pid, signal.SIGKILL)
    launch.wait()
    assert not (out / "metrics.jsonl").exists()  # killed within the first epoch

    resumed = subprocess.run(
        [sys.executable, "-m", "genmod", "run", "--resume", str(out), "--nproc", "2"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming mlp-vae from epoch 1" in resumed.stdout
    assert losses(out) == losses(streamed)
