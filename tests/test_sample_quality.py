"""Sample-quality metrics: FID, KID and precision/recall over genmod's shipped MNIST features,
checked against an independent implementation, against the data itself and against shipped
models; the feature networks' weights are checked before use and never downloaded."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import genmod as api
from genmod.config import ComponentRef
from genmod.errors import ConfigError
from genmod.features import NETWORKS, FeatureNetwork
from genmod.quality import features_of
from helpers import genmod

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"


@pytest.fixture(scope="module")
def mnist_features(mnist) -> tuple[torch.Tensor, torch.Tensor]:
    """Shipped-network features of 10,000 training and the 10,000 test images."""
    network = NETWORKS["mnist"].load().network
    train, test = mnist
    return features_of(network, train[:10000]), features_of(network, test)


def test_the_training_images_score_an_fid_below_one_against_the_test_images(mnist_features, registry):
    train, test = mnist_features
    fid = registry.build_evaluator(ComponentRef(name="fid")).compute(train, test)["fid"]
    noise = features_of(NETWORKS["mnist"].load().network, torch.rand(2000, 1, 28, 28))
    assert fid < 1
    assert registry.build_evaluator(ComponentRef(name="fid")).compute(noise, test)["fid"] > 100 * fid


def test_genmods_fid_equals_torchmetrics_on_the_same_features(mnist_features, registry):
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Given(nn.Identity):
        num_features = mnist_features[0].shape[1]

    train, test = (f[:3000] for f in mnist_features)
    reference = FrechetInceptionDistance(feature=Given())
    reference.update(train, real=False)
    reference.update(test, real=True)
    ours = registry.build_evaluator(ComponentRef(name="fid")).compute(train, test)["fid"]
    assert ours == pytest.approx(float(reference.compute()), rel=1e-3)


def test_kid_and_precision_recall_separate_the_data_from_a_collapsed_model(mnist_features, registry):
    train, test = mnist_features
    collapsed = train[train.norm(dim=1).argsort()[:1]].expand(2000, -1)  # one image, repeated
    kid = registry.build_evaluator(ComponentRef(name="kid", subset_size=500))
    prc = registry.build_evaluator(ComponentRef(name="precision-recall"))
    data, same = kid.compute(train, test), kid.compute(collapsed, test)
    assert abs(data["kid"]) < 3 * data["kid_se"] + 1e-3 < same["kid"]
    assert prc.compute(train, test)["recall"] > 0.5 > prc.compute(collapsed, test)["recall"]
    few = kid.compute(train[:500], test)  # as many samples as a subset holds: halved subsets
    assert few["kid_se"] > 0 and kid.describe().startswith("100 subsets of 250")


def test_kids_standard_error_matches_the_spread_of_kids_of_independent_sets(mnist_features, registry):
    train, test = (
        f[torch.randperm(len(f), generator=torch.Generator().manual_seed(0))] for f in mnist_features
    )
    kid = registry.build_evaluator(ComponentRef(name="kid", subset_size=250))
    # Ten independent pairs of 1,000 "samples" (scaled training features: another
    # distribution, as a model's samples are) and 1,000 test images.
    results = [kid.compute(g * 1.3, r) for g, r in zip(train.split(1000), test.split(1000), strict=True)]
    observed = torch.tensor([r["kid"] for r in results]).std()
    stated = torch.tensor([r["kid_se"] for r in results]).mean()
    # Four disjoint subsets give a rough figure (0.62 of the spread here); the spread of 100
    # overlapping subsets over 10 gave an eighth of it.
    assert 0.4 < stated / observed < 2.5, (stated, observed)


@pytest.mark.slow
def test_a_better_model_scores_a_lower_fid_and_the_figures_join_its_eval_json(tmp_path, data_dir):
    scores = {}
    for name in ("hvae-vampprior", "vae"):
        run = _shipped(name, tmp_path, ("config.yaml", "best.pt", "eval.json"))
        result = genmod(
            "eval", run, "--metric", "fid", "--metric", "kid", "--samples", 2000, "--device", "cpu"
        )
        assert result.exit_code == 0, result.output
        assert (
            "mnist features, 2000 samples drawn in fp32 vs the test split of mnist (10000 images)"
            in result.output
        )
        report = json.loads((run / "eval.json").read_text())
        assert report["nll"] == json.loads((PRETRAINED / name / "eval.json").read_text())["nll"]
        scores[name] = report["sample_quality"]["fid"]["figures"]["fid"]
        assert report["sample_quality"]["kid"]["settings"].startswith("100 subsets of 1000")
    untrained = tmp_path / "untrained"
    assert genmod("run", "mlp-vae", "--epochs", 1, "--set", "data.limit=100", "--set", "train.lr=1e-9",
                  "--out", untrained, "--device", "cpu").exit_code == 0  # fmt: skip
    assert genmod("eval", untrained, "--metric", "fid", "--samples", 2000).exit_code == 0
    scores["untrained"] = json.loads((untrained / "eval.json").read_text())["sample_quality"]["fid"][
        "figures"
    ]["fid"]
    assert scores["hvae-vampprior"] < scores["vae"] < scores["untrained"] / 3, scores


def _shipped(name: str, tmp_path: Path, files: tuple[str, ...] = ("config.yaml", "best.pt")) -> Path:
    """A copy of ``pretrained/NAME``'s ``files``: evaluations write into it, never the checkout."""
    run = tmp_path / name
    run.mkdir()
    for file in files:
        (run / file).write_bytes((PRETRAINED / name / file).read_bytes())
    return run


def test_samples_are_drawn_in_float32_unless_the_command_asks_for_another_precision(tmp_path, data_dir):
    run = _shipped("vae", tmp_path)
    default = genmod("eval", run, "--metric", "fid", "--samples", 500, "--device", "cpu")
    assert default.exit_code == 0, default.output
    fp32 = json.loads((run / "eval.json").read_text())["sample_quality"]["fid"]
    assert fp32["precision"] == "fp32" and "500 samples drawn in fp32" in fp32["how"]
    (bf16,) = api.sample_quality(run, ["fid"], samples=500, precision="bf16")
    assert bf16.precision == "bf16" and "500 samples drawn in bf16" in bf16.how
    # The same latents (seed 0) decoded in bfloat16: the figure moves, a little.
    assert bf16.figures["fid"] != fp32["figures"]["fid"]
    assert bf16.figures["fid"] == pytest.approx(fp32["figures"]["fid"], rel=0.05)
    refused = genmod("eval", run, "--metric", "fid", "--precision", "fp64")
    (line,) = refused.output.strip().splitlines()
    assert refused.exit_code == 2 and "precision must be one of auto, fp32, bf16, fp16, not 'fp64'" in line


def test_samples_that_diverge_stop_in_one_line_and_a_sampling_option_is_recorded(tmp_path, data_dir):
    run = _shipped("glow", tmp_path)
    # At temperature 1 some of the shipped Glow's inverses overflow (about 7 in 100).
    diverged = genmod("eval", run, "--metric", "fid", "--samples", 500, "--device", "cpu")
    (line,) = diverged.output.strip().splitlines()
    assert diverged.exit_code == 1 and "samples had pixels that are not finite (NaN or inf)" in line
    assert "a sampling --option may keep them finite" in line
    cooled = genmod("eval", run, "--metric", "fid", "--samples", 500, "--option", "temperature=0.7")
    assert cooled.exit_code == 0, cooled.output
    fid = json.loads((run / "eval.json").read_text())["sample_quality"]["fid"]
    assert fid["sampling"] == {"temperature": 0.7} and "drawn in fp32 with temperature=0.7" in fid["how"]
    assert fid["figures"]["fid"] > 0
    wrong = genmod("eval", run, "--metric", "fid", "--option", "temp=0.7")
    assert (
        wrong.exit_code == 2
        and "sampling option temp" in wrong.output
        and "takes temperature" in wrong.output
    )


@pytest.mark.slow
def test_reference_features_are_computed_once_and_read_back(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("GENMOD_FEATURES_DIR", str(tmp_path / "features"))
    run = tmp_path / "run"
    assert genmod("run", "mlp-vae", "--epochs", 1, "--set", "data.limit=500", "--set", "data.test_limit=500",
                  "--out", run, "--device", "cpu").exit_code == 0  # fmt: skip
    first = api.sample_quality(run, ["fid"], samples=200)[0].figures["fid"]
    (cached,) = (tmp_path / "features" / "reference").iterdir()
    assert cached.name.startswith("test-split-of-mnist-mnist-")
    torch.save(torch.load(cached) + 1, cached)  # a cache that is read changes the figure
    assert api.sample_quality(run, ["fid"], samples=200)[0].figures["fid"] != pytest.approx(first)


class Tiny(nn.Module):
    """A feature network of the interface every row of genmod.features.NETWORKS has."""

    num_features = 4

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _tiny(weights: Path) -> nn.Module:
    net = Tiny()
    net.load_state_dict(torch.load(weights, weights_only=True))
    return net


def test_feature_weights_load_only_with_their_checksum_and_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("GENMOD_FEATURES_DIR", str(tmp_path))
    weights = tmp_path / "tiny.pt"
    torch.save(Tiny().state_dict(), weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    row = FeatureNetwork(name="tiny", description="", build=_tiny, file="tiny.pt", sha256=digest[:8])
    images = torch.rand(5, 3, 8, 8)
    assert row.load().network(images).shape == (5, 4)
    wrong = FeatureNetwork(name="tiny", description="", build=_tiny, file="tiny.pt", sha256="00000000")
    with pytest.raises(ConfigError, match=f"its sha256 is {digest[:16]}"):
        wrong.load()
    missing = FeatureNetwork(name="tiny", description="", build=_tiny, file="gone.pt", sha256=digest)
    with pytest.raises(ConfigError, match=f"not at {tmp_path / 'gone.pt'}: put the file gone.pt"):
        missing.load()


@pytest.mark.slow
def test_missing_inception_weights_stop_in_one_line_naming_the_path_and_checksum(tmp_path, monkeypatch):
    monkeypatch.setenv("GENMOD_FEATURES_DIR", str(tmp_path))
    run = tmp_path / "run"
    run.mkdir()
    for file in ("config.yaml", "best.pt"):
        (run / file).write_bytes((PRETRAINED / "vae" / file).read_bytes())
    result = genmod("eval", run, "--metric", "fid", "--features", "inception-v3", "--samples", 10)
    (line,) = result.output.strip().splitlines()
    assert result.exit_code == 2
    assert str(tmp_path / "pt_inception-2015-12-05-6726825d.pth") in line and "sha256 6726825d" in line
    assert list(tmp_path.iterdir()) == [run]  # nothing downloaded


def test_an_unknown_metric_is_named_with_the_registered_ones(tmp_path):
    result = genmod("eval", PRETRAINED / "vae", "--metric", "fdi")
    (line,) = result.output.strip().splitlines()
    assert result.exit_code == 2 and "unknown evaluator 'fdi': did you mean 'fid'" in line


@pytest.mark.slow
def test_a_plugin_evaluator_from_the_docs_is_listed_and_computed(tmp_path):
    page = (Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text()
    (body,) = re.findall(r"```python\n(# file: mean_gap.py\n.*?)```", page, re.S)
    plugin = tmp_path / "mean_gap.py"
    plugin.write_text(body)
    assert "mean-gap" in genmod("list", "--kind", "evaluator", "--plugin", plugin).output
    run = tmp_path / "vae"
    run.mkdir()
    for file in ("config.yaml", "best.pt"):
        (run / file).write_bytes((PRETRAINED / "vae" / file).read_bytes())
    result = genmod("eval", run, "--plugin", plugin, "--metric", "mean-gap", "--samples", 1000)
    assert result.exit_code == 0, result.output
    gap = json.loads((run / "eval.json").read_text())["sample_quality"]["mean-gap"]["figures"]["mean_gap"]
    assert gap > 0


@pytest.mark.slow
def test_training_with_inception_features_it_cannot_find_stops_before_the_first_step(tmp_path):
    weights = tmp_path / "nowhere" / "inception.pth"
    result = genmod(
        "run", "mlp-vae", "--epochs", 1, "--set", "data.limit=500", "--out", tmp_path / "run",
        "--set", f"train.sample_metrics={{metrics: [fid], features: inception-v3, features_weights: {weights}}}",
    )  # fmt: skip
    (line,) = result.output.strip().splitlines()
    assert result.exit_code == 2 and f"not at {weights}" in line and "sha256 6726825d" in line
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
