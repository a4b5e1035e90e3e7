"""The shipped models under pretrained/: each evaluates and samples from a fresh clone, and its
recipe's first epochs reproduce the first lines of its metrics.jsonl, so anyone can see the
weights came from the recipe: bit for bit on the kind of machine it was made on, within a stated
tolerance elsewhere (the summary at the end of a test session says which check ran)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from genmod import machine
from helpers import genmod, losses

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"
SHIPPED = sorted(p for p in PRETRAINED.iterdir() if p.is_dir()) if PRETRAINED.is_dir() else []
# The recipes the suite retrains, one epoch each: the VAE's and the IWAE's, one for each
# objective of the compiled bfloat16 rows. The others' first epochs take longer or compile
# other graphs (a VampPrior's 500 pseudo-inputs, the float32 HVAE's 30 s epoch; on a 2-core CPU
# a PixelCNN epoch takes 14 minutes, a DCGAN's 2.5 or more, a Glow's and a diffusion model's
# about 3), which the suite's ten minutes cannot hold: docs/evaluation.md gives their check.
IN_SUITE = ("vae", "iwae-k5")
# The check by hand: GENMOD_RECIPE_EPOCHS=3 pytest tests/test_pretrained.py -k "recipe and NAME"
# retrains that many epochs of every selected recipe, the slow ones included.
BY_HAND = os.environ.get("GENMOD_RECIPE_EPOCHS")
# Images each model samples in the suite: a PixelCNN draws pixel by pixel, 784 network passes.
SAMPLED = {"pixelcnn": 1}
# Sampling options: the diffusion model's fast deterministic sampler, on its shipped weights.
SAMPLE_OPTIONS = {"diffusion": ("--option", "sampler=ddim", "--option", "steps=50")}


@pytest.mark.slow
@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_model_is_small_evaluates_and_samples(folder, tmp_path, data_dir):
    assert sum(f.stat().st_size for f in folder.iterdir()) < 10 * 2**20
    copy = tmp_path / folder.name  # eval writes eval.json: never into the checkout
    shutil.copytree(folder, copy)
    shipped = json.loads((folder / "eval.json").read_text())
    if "nll" in shipped:
        _likelihood_is_reproduced(copy, shipped)
    else:  # a model without a likelihood ships the sample quality of 10,000 samples
        _sample_quality_is_reproduced(copy, shipped)
    n = SAMPLED.get(folder.name, 16)
    options = SAMPLE_OPTIONS.get(folder.name, ())
    assert genmod("sample", copy, "-n", n, *options, "-o", tmp_path / "samples.png").exit_code == 0


def _likelihood_is_reproduced(copy: Path, shipped: dict) -> None:
    assert shipped["images"] == 10000 and shipped["split"] == "test"
    # Importance-sampled rows with k = 5000 (reports before 0.3 name no quantity: they are
    # all IS-NLL); an exact NLL has no k.
    quantity = shipped.get("quantity", "IS-NLL")
    assert shipped["k"] == (5000 if quantity == "IS-NLL" else None)
    result = genmod("eval", copy, "--k", 100, "--images", 300)
    assert result.exit_code == 0, result.output
    # The shipped eval.json is kept; this evaluation (other k and images) is saved beside it.
    saved = Path(result.output.strip().splitlines()[-1].removeprefix("saved "))
    assert saved.parent == copy and saved.name != "eval.json"
    assert json.loads((copy / "eval.json").read_text()) == shipped
    quick = json.loads(saved.read_text())
    assert quick["epoch"] == shipped["epoch"] and quick["quantity"] == quantity
    assert abs(quick["nll"] - shipped["nll"]) < 6 * (quick["nll_se"] + 1.0)  # same model, fewer samples


def _sample_quality_is_reproduced(copy: Path, shipped: dict) -> None:
    fid = shipped["sample_quality"]["fid"]
    assert fid["samples"] == 10000 and fid["reference"] == "test split of mnist (10000 images)"
    refused = genmod("eval", copy)  # no likelihood: said in one line, naming what applies
    assert refused.exit_code == 2 and "--metric fid" in refused.output
    result = genmod("eval", copy, "--metric", "fid", "--samples", 2000)
    assert result.exit_code == 0, result.output
    quick = json.loads((copy / "eval.json").read_text())["sample_quality"]["fid"]
    assert quick["samples"] == 2000 and quick["epoch"] == fid["epoch"]
    # The same weights: FID is biased upwards by a few points with 2,000 samples instead of
    # 10,000 (measured on the DCGAN: 130.5 with 10,000, 132.5 and 134.7 with 2,000).
    assert fid["figures"]["fid"] - 2 < quick["figures"]["fid"] < 1.1 * fid["figures"]["fid"] + 5


# Float rounding repeats bit for bit only on the machine kind, thread count and torch a model
# was made on (its machine.json). Elsewhere (another SIMD width, emulated bfloat16, other
# threads) the first epochs drift: up to 0.63% on the VAE's 3,000 steps an epoch, measured with
# ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 OMP_NUM_THREADS=1. A changed recipe moves
# them further: the VAE's lr 1e-3 -> 8e-4 moved them 2.1-3.2%, a VampPrior's latents 40 -> 30 6%.
TOLERANCE = 0.015


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_the_recipe_reproduces_the_first_epochs_bit_for_bit_on_its_machine_else_within_tolerance(
    folder, tmp_path, data_dir, record_property
):
    out = tmp_path / "again"
    epochs = int(BY_HAND) if BY_HAND else int(folder.name in IN_SUITE)
    if not epochs:
        pytest.skip(
            f"{folder.name}'s recipe is retrained by hand (GENMOD_RECIPE_EPOCHS=3): docs/evaluation.md"
        )
    result = genmod(
        "run", "--config", folder / "config.yaml", "--epochs", epochs, "--out", out, "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    shipped = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()[:epochs]]
    shipped = [{k: v for k, v in row.items() if k != "seconds"} for row in shipped]
    again = losses(out)
    # A run's last epoch is always evaluated; in the longer run a recipe evaluating every
    # n-th epoch (train.eval_every) did not evaluate it.
    for row, was in zip(again, shipped, strict=True):
        row.update({split: None for split in ("validation", "test") if was[split] is None})
    made_on, here = machine.made_on(folder), machine.made_on(out)
    assert made_on is not None and here is not None, "every shipped folder says what it was made on"
    # Every session (start or resume) that computed the epochs checked decides their bits.
    sessions = [s for s in machine.read(folder) if s["from_epoch"] <= epochs]
    differs = ", ".join(dict.fromkeys(d for s in sessions for d in machine.differences(s, here, epochs)))
    if not differs:
        record_property("check", "bit for bit (same machine kind, threads and torch)")
        assert again == shipped
        return
    record_property("check", f"within {TOLERANCE:.1%} (not as it was made: {differs})")
    for retrained, row in zip(again, shipped, strict=True):
        assert (retrained["epoch"], retrained["lr"], retrained["skipped"]) == (
            row["epoch"],
            row["lr"],
            row["skipped"],
        )
        for split in ("train", "validation", "test"):
            if row[split] is None:
                continue
            assert retrained[split]["terms"].keys() == row[split]["terms"].keys()
            # The bound and its terms (a GAN has no bound: its two losses are terms).
            figures = {"loss": retrained[split]["loss"], **retrained[split]["terms"]}
            for name, value in {"loss": row[split]["loss"], **row[split]["terms"]}.items():
                expected = None if value is None else pytest.approx(value, rel=TOLERANCE)
                assert figures[name] == expected, (split, name, row["epoch"])


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_info_says_where_a_shipped_model_came_from(folder):
    result = genmod("info", folder)
    assert result.exit_code == 0, result.output
    evaluation = json.loads((folder / "eval.json").read_text())
    assert f"genmod run --config {folder / 'config.yaml'}" in result.output
    if "nll" in evaluation:
        assert f"{evaluation.get('quantity', 'IS-NLL')} {evaluation['nll']:.2f}" in result.output
        assert evaluation["k"] is None or f"k={evaluation['k']}" in result.output
    else:
        assert f"fid {evaluation['sample_quality']['fid']['figures']['fid']:.4g}" in result.output
    epoch = evaluation.get("epoch") or evaluation["sample_quality"]["fid"]["epoch"]
    assert f"weights: epoch {epoch}" in result.output


@pytest.mark.parametrize(
    "recipe", sorted((PRETRAINED.parent / "configs").glob("*.yaml")), ids=lambda p: p.stem
)
def test_every_recipe_under_configs_validates(recipe, registry):
    from genmod.config_loader import resolve_run_config

    config = resolve_run_config(registry, config_file=recipe)
    assert config.model.name and config.train.epochs >= 1


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_the_readme_table_shows_the_shipped_figures(folder):
    readme = (PRETRAINED.parent / "README.md").read_text().splitlines()
    (row,) = [line for line in readme if line.startswith("|") and f"`pretrained/{folder.name}`" in line]
    evaluation = json.loads((folder / "eval.json").read_text())
    if "nll" in evaluation:
        assert f"{evaluation['nll']:.2f} ± {evaluation['nll_se']:.2f}" in row
    quality = evaluation.get("sample_quality", {})
    if "fid" in quality:
        assert f"| {quality['fid']['figures']['fid']:.2f} |" in row
