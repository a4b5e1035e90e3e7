"""8-bit RGB images: the discretized logistic mixture is a proper distribution over a pixel's
256 values, and the conv recipe trains on an image folder, reporting bits per dimension."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from genmod_zoo.logistic import DiscretizedLogisticMixture
from helpers import genmod, metrics

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "conv-rgb.yaml"


def test_the_logistic_mixture_sums_to_one_over_the_256_values_of_a_pixel():
    torch.manual_seed(0)
    likelihood = DiscretizedLogisticMixture((1, 1, 1), mixtures=3)
    values = torch.arange(256.0).div(255).view(256, 1, 1, 1)
    for scale in (0.1, 1.0, 4.0):  # from sharp components (mass in one bin) to flat ones
        params = (torch.randn(likelihood.params_shape((1, 1, 1))) * scale).expand(256, -1, -1, -1)
        log_p = likelihood.log_prob(params, values)
        assert log_p.shape == (256,) and bool((log_p <= 0).all())
        assert abs(float(torch.logsumexp(log_p.double(), 0).exp()) - 1) < 1e-5


def test_colours_of_a_pixel_are_coupled_and_every_image_has_a_finite_log_probability():
    likelihood = DiscretizedLogisticMixture((3, 4, 4), mixtures=2)
    assert likelihood.params_shape((3, 4, 4)) == (2 * (1 + 3 + 3 + 3), 4, 4)
    params = torch.randn(5, *likelihood.params_shape((3, 4, 4)))
    images = torch.randint(0, 256, (5, 3, 4, 4)).float().div(255)
    assert torch.isfinite(likelihood.log_prob(params, images)).all()
    mean = likelihood.mean(params)
    assert mean.shape == (5, 3, 4, 4) and bool(((mean >= 0) & (mean <= 1)).all())


def _image_folder(root: Path, counts: dict[str, int]) -> Path:
    """Coloured rectangles on coloured grounds, 32x32 RGB PNGs."""
    generator = torch.Generator().manual_seed(0)
    for split, count in counts.items():
        (root / split).mkdir(parents=True)
        for i in range(count):
            colours = torch.randint(0, 256, (2, 3), generator=generator, dtype=torch.uint8)
            image = colours[0].view(3, 1, 1).expand(3, 32, 32).clone()
            top, left = torch.randint(0, 20, (2,), generator=generator).tolist()
            image[:, top : top + 12, left : left + 12] = colours[1].view(3, 1, 1)
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / split / f"{i:03d}.png")
    return root


@pytest.mark.slow
def test_the_conv_rgb_recipe_trains_on_an_image_folder_and_reports_bits_per_dim(tmp_path):
    folder = _image_folder(tmp_path / "images", {"train": 128, "test": 32})
    out = tmp_path / "run"
    small = "{name: conv, channels: [8, 16, 32], hidden: 64}"  # the recipe's layers, narrower
    result = genmod(
        "run", "--config", RECIPE, "--data-dir", folder, "--out", out, "--epochs", 3, "--device", "cpu",
        "--set", "train.batch_size=16", "--set", f"model.encoder={small}", "--set", f"model.decoder={small}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = metrics(out)
    assert rows[-1]["test"]["loss"] < rows[0]["test"]["loss"]
    bits = rows[-1]["test"]["loss"] / (3 * 32 * 32 * math.log(2))
    assert f"{bits:.3f} bits/dim" in result.output and "test -ELBO (bits/dim)" in result.output

    evaluated = genmod("eval", out, "--k", 20, "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((out / "eval.json").read_text())
    assert abs(report["bits_per_dim"] - report["nll"] / (3 * 32 * 32 * math.log(2))) < 1e-9
    assert "bits/dim" in evaluated.output and report["bits_per_dim"] < bits + 0.01
