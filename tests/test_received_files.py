"""Every file genmod reads that someone could send, crafted or damaged: reading it imports no
code and unpickles no object, a size it declares is checked against the data it really holds
before anything is allocated, and what is wrong is one line naming the file, never a
traceback. And a full disk or a read-only folder loses no result and no earlier checkpoint."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from helpers import genmod, optional, small_run

PRETRAINED_VAE = Path(__file__).resolve().parents[1] / "pretrained" / "vae"


def one_line(result, *words: str, code: int | None = None) -> str:
    """The command failed with one line holding ``words``, and no traceback."""
    assert result.exit_code != 0 if code is None else result.exit_code == code, result.output
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    ), result.output
    (line,) = result.output.strip().splitlines()
    for word in words:
        assert word in line, line
    return line


def received(tmp_path: Path) -> Path:
    copy = tmp_path / "vae"
    shutil.copytree(PRETRAINED_VAE, copy)
    return copy


def peak_rss_mb(args: list[str], **options) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``genmod ARGS`` in a child process; its output and its peak resident memory (MB)."""
    probe = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stdout.write(done.stdout + done.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n"
        "sys.exit(done.returncode)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, sys.executable, "-m", "genmod", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        **options,
    )
    *output, peak = done.stdout.strip().splitlines()
    return subprocess.CompletedProcess(done.args, done.returncode, "\n".join(output), done.stderr), float(
        peak
    )


# -- weights files -------------------------------------------------------------------------
def test_a_checkpoint_with_compressed_records_is_refused_before_it_is_unpacked(tmp_path, data_dir):
    """torch writes its records stored, never compressed: a compressed one can hold gigabytes
    of zeros in a few megabytes (a zip bomb)."""
    shipped = received(tmp_path)
    plain = shipped / "best.pt"
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            target.writestr(item.filename, source.read(item))
        target.writestr("vae/data/999", bytes(200 * 2**20))  # 200 MB of zeros in 200 KB
    assert bomb.stat().st_size < 2**20 + plain.stat().st_size
    shutil.move(bomb, plain)
    one_line(genmod("sample", shipped, "-n", 4), "best.pt", "compressed")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["best.pt", "checkpoint.pt"])
@pytest.mark.parametrize("damage", ["truncated", "zeroed", "empty"])
def test_a_damaged_weights_file_is_one_line(tmp_path, data_dir, name, damage):
    out = tmp_path / "run"
    assert small_run(out, "--epochs", 1, "--set", "data.validation=200").exit_code == 0
    path = out / name
    content = path.read_bytes()
    path.write_bytes(
        {"truncated": content[: len(content) // 2], "zeroed": bytes(len(content)), "empty": b""}[damage]
    )
    checkpoint = "best" if name == "best.pt" else "last"
    one_line(genmod("sample", out, "-n", 4, "--checkpoint", checkpoint), name)


def test_an_export_with_damaged_metadata_is_one_line(tmp_path, data_dir):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    shipped = received(tmp_path)
    assert genmod("export", shipped, "-o", tmp_path / "m.safetensors").exit_code == 0
    with safe_open(str(tmp_path / "m.safetensors"), "pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(tmp_path / "m.safetensors"))
    for broken in ({"config": "{not json"}, {"config": "[1, 2]"}, {"epoch": "many"}, {"data_shape": "x"}):
        save_file(tensors, str(tmp_path / "bad.safetensors"), {**metadata, **broken})
        one_line(genmod("sample", tmp_path / "bad.safetensors"), "bad.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(os.urandom(4096))
    one_line(genmod("sample", tmp_path / "garbage.safetensors"), "garbage.safetensors")


# -- configs -------------------------------------------------------------------------------
def test_a_config_with_yaml_aliases_is_refused_before_it_is_expanded(tmp_path, data_dir):
    shipped = received(tmp_path)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20)
    )
    (shipped / "config.yaml").write_text(bomb + (PRETRAINED_VAE / "config.yaml").read_text())
    for args in (["export", shipped], ["sample", shipped], ["run", "--config", shipped / "config.yaml"]):
        one_line(genmod(*args), "config.yaml", "aliases")


@pytest.mark.parametrize(
    "change", ["model.latent_dim=1000000000", "model.hidden_dims=[2000000, 400]"], ids=["latents", "widths"]
)
def test_a_config_declaring_huge_layers_is_refused_before_the_model_is_built(tmp_path, data_dir, change):
    shipped = received(tmp_path)
    config = yaml.safe_load((shipped / "config.yaml").read_text())
    key, value = change.split("=")
    config["model"][key.split(".")[1]] = yaml.safe_load(value)
    (shipped / "config.yaml").write_text(yaml.safe_dump(config))
    done, peak = peak_rss_mb(["sample", shipped, "-n", 4, "-o", tmp_path / "s.png"])
    assert done.returncode != 0 and "does not match" in done.stdout and "Traceback" not in done.stdout, done
    assert peak < 2000, f"{peak:.0f} MB"


# -- datasets ------------------------------------------------------------------------------
def tensor_file_run(tmp_path: Path, images: torch.Tensor):
    path = tmp_path / "images.pt"
    torch.save({"train": images, "test": images}, path)
    return genmod(
        "run", "mlp-vae", "--set", "data.name=tensor-file", "--data-dir", path, "--out", tmp_path / "r"
    )


def test_a_tensor_file_with_a_channel_count_no_image_has_is_refused(tmp_path):
    one_line(tensor_file_run(tmp_path, torch.zeros(4, 1000, 2, 2, dtype=torch.uint8)), "1000 channels")


def test_a_tensor_file_declaring_more_pixels_than_it_holds_is_refused(tmp_path):
    """A tensor whose strides repeat one byte can declare any shape: 10^9 images of 28x28."""
    huge = torch.zeros(1, dtype=torch.uint8).expand(10**9, 1, 28, 28)
    done = tensor_file_run(tmp_path, huge)
    one_line(done, "images.pt", "holds")
    assert (tmp_path / "images.pt").stat().st_size < 2**20


def image_folder(tmp_path: Path, mnist) -> Path:
    root = tmp_path / "images"
    for split, images in (("train", mnist[0][:40]), ("test", mnist[1][:10])):
        (root / split).mkdir(parents=True)
        for i, image in enumerate(images):
            Image.fromarray((image[0] * 255).byte().numpy()).save(root / split / f"{i:03d}.png")
    return root


def test_an_image_folder_with_a_broken_image_names_it_in_training_and_packing(tmp_path, mnist):
    root = image_folder(tmp_path, mnist)
    (root / "train" / "017.png").write_bytes(b"")
    run = genmod(
        "run", "mlp-vae", "--set", "data.name=image-folder", "--data-dir", root, "--out", tmp_path / "r"
    )
    one_line(run, "017.png")
    one_line(genmod("data", "pack", root, tmp_path / "packed"), "017.png")
    assert not (tmp_path / "packed").exists()  # a failed pack leaves nothing that blocks a rerun


def test_an_image_folder_mixing_grey_and_colour_is_refused(tmp_path, mnist):
    root = image_folder(tmp_path, mnist)
    Image.new("RGB", (28, 28), "red").save(root / "train" / "020.png")
    run = genmod(
        "run", "mlp-vae", "--set", "data.name=image-folder", "--data-dir", root, "--out", tmp_path / "r"
    )
    one_line(run, "020.png", "colour")


def test_a_named_pipe_in_an_image_folder_is_skipped_not_waited_on(tmp_path, mnist):
    root = image_folder(tmp_path, mnist)
    os.mkfifo(root / "train" / "zzz.png")
    run = genmod(
        "run", "mlp-vae", "--set", "data.name=image-folder", "--data-dir", root, "--out", tmp_path / "r",
        "--epochs", 1, "--set", "train.batch_size=20", "--device", "cpu",
    )  # fmt: skip
    assert run.exit_code == 0, run.output


@pytest.fixture()
def packed(tmp_path, data_dir) -> Path:
    optional("streaming")
    out = tmp_path / "packed"
    done = genmod("data", "pack", "mnist", out, "--limit", 200, "--data-dir", data_dir, "--shard-mb", 0.05)
    assert done.exit_code == 0, done.output
    return out


@pytest.mark.parametrize(
    "damage",
    ["empty index", "corrupt index", "truncated shard", "missing shard", "fewer images declared"],
)
def test_a_damaged_packed_folder_is_one_line_naming_the_file(packed, tmp_path, damage):
    index = packed / "train" / "index.json"
    shards = json.loads(index.read_text())["shards"]
    shard = packed / "train" / shards[0]["raw_data"]["basename"]
    if damage == "empty index":
        index.write_text("")
    elif damage == "corrupt index":
        index.write_text('{"shards": [{"samples": "x"')
    elif damage == "truncated shard":
        shard.write_bytes(shard.read_bytes()[:100])
    elif damage == "missing shard":
        shard.unlink()
    else:
        declared = json.loads((packed / "genmod.json").read_text())
        declared["images"]["train"] = 150
        (packed / "genmod.json").write_text(json.dumps(declared))
    run = genmod(
        "run", "mlp-vae", "--set", "data.name=streaming", "--data-dir", packed, "--out", tmp_path / "r",
        "--epochs", 1, "--device", "cpu", "--set", "data.validation=0",
    )  # fmt: skip
    expected = {
        "fewer images declared": "genmod.json",
        "empty index": "index.json",
        "corrupt index": "index.json",
    }
    one_line(run, expected.get(damage, shard.name))


# -- run folders' other files --------------------------------------------------------------
@pytest.mark.parametrize(
    "file, content",
    [
        ("eval.json", "[]"),
        ("eval.json", "{"),
        ("metrics.jsonl", '{"epoch": 1}\nnot json\n'),
        ("config.yaml", "train: abc\n"),
    ],
    ids=["eval-list", "eval-broken", "metrics-broken", "config-wrong-type"],
)
def test_one_damaged_run_folder_never_hides_the_others(tmp_path, data_dir, file, content):
    runs = tmp_path / "runs"
    runs.mkdir()
    good = received(runs)
    bad = runs / "bad"
    shutil.copytree(good, bad)
    (bad / file).write_text(content)
    listing = genmod("runs", runs)
    assert listing.exit_code == 0, listing.output
    assert "vae" in listing.output and "bad" in listing.output and file in listing.output
    info = genmod("info", bad)
    one_line(info, file)


def test_a_damaged_trackers_file_is_one_line(tmp_path, data_dir):
    optional("tensorboard")
    out = tmp_path / "run"
    assert small_run(out, "--epochs", 1, "--logger", "tensorboard").exit_code == 0
    (out / "trackers.json").write_text("[1, 2")
    one_line(genmod("run", "--resume", out, "--epochs", 2), "trackers.json")


# -- full disks and read-only folders ------------------------------------------------------
@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_keeps_the_last_one_and_leaves_no_partial_file(tmp_path, data_dir):
    """A file-size limit makes every write past it fail as a full disk does (EFBIG/ENOSPC)."""
    out = tmp_path / "run"
    assert small_run(out, "--epochs", 1).exit_code == 0
    before = (out / "checkpoint.pt").read_bytes()

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))

    done = subprocess.run(
        [sys.executable, "-m", "genmod", "run", "--resume", str(out), "--epochs", "2"],
        capture_output=True, text=True, preexec_fn=limited, timeout=300,
    )  # fmt: skip
    output = (done.stdout + done.stderr).strip()
    assert done.returncode != 0 and "Traceback" not in output, output
    assert "checkpoint.pt" in output.splitlines()[-1] and "kept" in output.splitlines()[-1]
    assert (out / "checkpoint.pt").read_bytes() == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".genmod.lock"]


@pytest.mark.slow
def test_a_full_disk_during_an_export_leaves_no_partial_file(tmp_path, data_dir):
    shipped = received(tmp_path)
    (tmp_path / "out").mkdir()

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))

    done = subprocess.run(
        [sys.executable, "-m", "genmod", "export", str(shipped), "-o", str(tmp_path / "out" / "m.safetensors")],
        capture_output=True, text=True, preexec_fn=limited, timeout=120,
    )  # fmt: skip
    output = (done.stdout + done.stderr).strip()
    assert done.returncode != 0 and "Traceback" not in output and len(output.splitlines()) == 1, output
    assert not list((tmp_path / "out").iterdir())


def test_an_evaluation_that_cannot_be_saved_is_printed_first_and_can_be_saved_elsewhere(tmp_path, data_dir):
    shipped = received(tmp_path)
    (shipped / "eval.json").unlink()
    (shipped / "eval.json").mkdir()  # unwritable as a file, for root too
    done = genmod("eval", shipped, "--k", 2, "--images", 10)
    assert done.exit_code != 0 and "Traceback" not in done.output
    assert "IS-NLL" in done.output and "--output" in done.output.strip().splitlines()[-1]
    saved = genmod("eval", shipped, "--k", 2, "--images", 10, "--output", tmp_path / "e.json")
    assert saved.exit_code == 0 and json.loads((tmp_path / "e.json").read_text())["images"] == 10


@pytest.mark.slow
def test_images_too_large_for_the_model_are_refused_before_it_is_built(tmp_path):
    """60 PNGs of 2000x2000 take 60 KB on disk and make an MLP of billions of weights."""
    root = tmp_path / "big"
    png = tmp_path / "one.png"
    Image.new("RGB", (2000, 2000), (1, 0, 0)).save(png)  # encoded once: it takes a tenth of a second
    for split, count in (("train", 60), ("test", 2)):
        (root / split).mkdir(parents=True)
        for i in range(count):
            shutil.copy(png, root / split / f"{i:02d}.png")
    done, peak = peak_rss_mb(
        ["run", "mlp-vae", "--set", "data.name=image-folder", "--set", "train.batch_size=20", "--data-dir", root,
         "--out", tmp_path / "r"]
    )  # fmt: skip
    assert (
        done.returncode == 2 and "more than this machine's" in done.stdout and "Traceback" not in done.stdout
    )
    assert peak < 2000, f"{peak:.0f} MB"
