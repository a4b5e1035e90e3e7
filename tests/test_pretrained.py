"""The shipped models under pretrained/: each evaluates and samples from a fresh clone, and its
recipe's first epochs reproduce the first lines of its metrics.jsonl, so anyone can see the
weights came from the recipe: bit for bit on the kind of machine it was made on, within a stated
tolerance elsewhere (the summary at the end of a test session says which check ran)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from genmod import machine
from helpers import genmod, losses

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"
SHIPPED = sorted(p for p in PRETRAINED.iterdir() if p.is_dir()) if PRETRAINED.is_dir() else []
# Epochs of each recipe the suite retrains (3 by default); the HVAE's take 30 s each here, and
# the IWAE's and VampPrior's compile first, so the suite checks their first and the README gives
# the 3-epoch command.
EPOCHS_CHECKED = {"hvae-vampprior": 1, "iwae-k5": 1, "vampprior": 1}


@pytest.mark.slow
@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_model_is_small_evaluates_and_samples(folder, tmp_path, data_dir):
    assert sum(f.stat().st_size for f in folder.iterdir()) < 10 * 2**20
    copy = tmp_path / folder.name  # eval writes eval.json: never into the checkout
    shutil.copytree(folder, copy)
    shipped = json.loads((folder / "eval.json").read_text())
    assert shipped["k"] == 5000 and shipped["images"] == 10000 and shipped["split"] == "test"
    result = genmod("eval", copy, "--k", 100, "--images", 300)
    assert result.exit_code == 0, result.output
    quick = json.loads((copy / "eval.json").read_text())
    assert quick["epoch"] == shipped["epoch"]
    assert abs(quick["nll"] - shipped["nll"]) < 6 * (quick["nll_se"] + 1.0)  # same model, fewer samples
    assert genmod("sample", copy, "-n", 16, "-o", tmp_path / "samples.png").exit_code == 0


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
    out, epochs = tmp_path / "again", EPOCHS_CHECKED.get(folder.name, 3)
    result = genmod(
        "run", "--config", folder / "config.yaml", "--epochs", epochs, "--out", out, "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    shipped = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()[:epochs]]
    shipped = [{k: v for k, v in row.items() if k != "seconds"} for row in shipped]
    made_on, here = machine.made_on(folder), machine.made_on(out)
    assert made_on is not None and here is not None, "every shipped folder says what it was made on"
    if machine.same_bits(made_on, here):
        record_property("check", "bit for bit (same machine kind, threads and torch)")
        assert losses(out) == shipped
        return
    differs = ", ".join(k for k in machine.BIT_DECIDING if made_on.get(k) != here.get(k))
    record_property("check", f"within {TOLERANCE:.1%} (another {differs} than it was made on)")
    for again, row in zip(losses(out), shipped, strict=True):
        assert (again["epoch"], again["lr"], again["skipped"]) == (row["epoch"], row["lr"], row["skipped"])
        for split in ("train", "validation", "test"):
            assert again[split]["terms"].keys() == row[split]["terms"].keys()
            assert again[split]["loss"] == pytest.approx(row[split]["loss"], rel=TOLERANCE), (
                split,
                row["epoch"],
            )


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_info_says_where_a_shipped_model_came_from(folder):
    result = genmod("info", folder)
    assert result.exit_code == 0, result.output
    evaluation = json.loads((folder / "eval.json").read_text())
    assert f"genmod run --config {folder / 'config.yaml'}" in result.output
    assert f"IS-NLL {evaluation['nll']:.2f}" in result.output and f"k={evaluation['k']}" in result.output
    assert f"weights: epoch {evaluation['epoch']}" in result.output


@pytest.mark.parametrize(
    "recipe", sorted((PRETRAINED.parent / "configs").glob("*.yaml")), ids=lambda p: p.stem
)
def test_every_recipe_under_configs_validates(recipe, registry):
    from genmod.config_loader import resolve_run_config

    config = resolve_run_config(registry, config_file=recipe)
    assert config.model.name and config.train.epochs >= 1
