"""sample, reconstruct, manifold, runs and users' own datasets."""

import json

import pytest
import torch
from PIL import Image

from helpers import genmod, small_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("runs") / "latent2"
    result = genmod(
        "run",
        "mlp-vae",
        "--out",
        out,
        "--device",
        "cpu",
        "--epochs",
        1,
        "--set",
        "data.limit=2000",
        "--set",
        "model.latent_dim=2",
        "--data-dir",
        data_dir,
    )
    assert result.exit_code == 0, result.output
    return out


def test_sample_reconstruct_and_manifold(run_dir, tmp_path):
    assert genmod("sample", run_dir, "-n", 16, "-o", tmp_path / "s.png").exit_code == 0
    with Image.open(tmp_path / "s.png") as image:
        assert image.size == (4 * 30 + 2, 4 * 30 + 2)
    assert genmod("reconstruct", run_dir, "-n", 8, "-o", tmp_path / "r.png").exit_code == 0
    with Image.open(tmp_path / "r.png") as image:
        assert image.size == (8 * 30 + 2, 2 * 30 + 2)
    assert genmod("manifold", run_dir, "--size", 5).exit_code == 0
    with Image.open(run_dir / "manifold.png") as image:
        assert image.size == (5 * 30 + 2, 5 * 30 + 2)


def test_sampling_is_seeded(run_dir, tmp_path):
    for name in ("a", "b"):
        genmod("sample", run_dir, "-n", 4, "--seed", 3, "-o", tmp_path / f"{name}.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_manifold_needs_two_latents(tmp_path):
    out = tmp_path / "z20"
    assert small_run(out, "--epochs", 1).exit_code == 0
    result = genmod("manifold", out)
    assert (
        result.exit_code == 2
        and "it has 20 latents, not 2" in result.output
        and "model.latent_dim=2" in result.output
    )


def test_runs_table(run_dir):
    assert genmod("eval", run_dir, "--k", 10, "--images", 20).exit_code == 0
    result = genmod("runs", run_dir.parent)
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if "latent2" in line)
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["test"]["loss"]
    assert "mlp-vae" in row and "1/1" in row and f"{last:.2f}" in row and "k=10" in row
    assert genmod("runs", run_dir.parent / "missing").exit_code == 2


def test_fashion_mnist(tmp_path):
    out = tmp_path / "fashion"
    result = small_run(out, "--epochs", 1, "--set", "data.name=fashion-mnist")
    assert result.exit_code == 0, result.output
    assert "fashion-mnist" in (out / "config.yaml").read_text()


def test_tensor_file_dataset(tmp_path, mnist):
    data = tmp_path / "mine.pt"
    torch.save({"train": (mnist[0][:600] * 255).to(torch.uint8)[:, 0], "test": mnist[1][:100]}, data)
    out = tmp_path / "run"
    result = genmod(
        "run", "conv-vae", "--set", "data.name=tensor-file", "--data-dir", data, "--epochs", 1, "--out", out
    )
    assert result.exit_code == 0, result.output

    for content, message in (
        (
            {"train": torch.rand(10, 1, 28, 28) * 2, "test": torch.rand(5, 1, 28, 28)},
            "float images must lie in [0, 1]",
        ),
        ({"train": torch.rand(10, 784)}, "expected (N, C, H, W) or (N, H, W)"),
        ({"images": torch.rand(10, 1, 28, 28)}, "must hold a dict with 'train' and 'test'"),
    ):
        torch.save(content, data)
        bad = genmod(
            "run", "mlp-vae", "--set", "data.name=tensor-file", "--data-dir", data, "--out", tmp_path / "bad"
        )
        assert bad.exit_code == 1 and message in bad.output and "Traceback" not in bad.output


def test_image_folder_dataset(tmp_path, mnist):
    root = tmp_path / "digits"
    for split, images in (("train", mnist[0][:300]), ("test", mnist[1][:50])):
        (root / split / "any").mkdir(parents=True)
        for i, image in enumerate(images):
            Image.fromarray((image[0] * 255).to(torch.uint8).numpy()).save(
                root / split / "any" / f"{i:04d}.png"
            )
    out = tmp_path / "run"
    result = genmod(
        "run", "mlp-vae", "--set", "data.name=image-folder", "--data-dir", root, "--epochs", 1, "--out", out
    )
    assert result.exit_code == 0, result.output

    Image.new("L", (32, 32)).save(root / "train" / "odd.png")
    bad = genmod(
        "run", "mlp-vae", "--set", "data.name=image-folder", "--data-dir", root, "--out", tmp_path / "bad"
    )
    assert (
        bad.exit_code == 1
        and "odd.png is 32x32" in bad.output
        and "all images must have one size" in bad.output
    )
    missing = genmod(
        "run", "mlp-vae", "--set", "data.name=image-folder", "--data-dir", tmp_path, "--out", tmp_path / "bad"
    )
    assert missing.exit_code == 1 and "train/ and test/ subfolders" in missing.output


def test_export_is_taken_by_every_command_and_gives_the_same_nll(run_dir, tmp_path):
    path = tmp_path / "latent2.safetensors"
    assert genmod("export", run_dir, "-o", path).exit_code == 0
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:  # plain tensors and strings: nothing to unpickle
        assert json.loads(handle.metadata()["config"])["model"]["latent_dim"] == 2
    for source, report in ((run_dir, "run.json"), (path, "export.json")):
        assert genmod("eval", source, "--k", 20, "--images", 50, "--output", tmp_path / report).exit_code == 0
    from_run = json.loads((tmp_path / "run.json").read_text())
    from_export = json.loads((tmp_path / "export.json").read_text())
    assert from_export["nll"] == from_run["nll"] and from_export["epoch"] == from_run["epoch"]
    for command in ("sample", "reconstruct", "manifold"):
        assert genmod(command, path).exit_code == 0, command
        assert (tmp_path / f"latent2.{command.replace('sample', 'samples')}.png").is_file()
    assert "drop --checkpoint" in genmod("eval", path, "--checkpoint", "last").output
    assert genmod("export", run_dir, "-o", tmp_path / "weights.pt").exit_code == 2
