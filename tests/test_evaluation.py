"""Importance-sampled log-likelihood, binarized data and `genmod eval`."""

import json

import pytest
import torch

from genmod.config import DataConfig
from genmod.config_loader import resolve_run_config
from genmod.data import load_data
from genmod.evaluation import importance_sampled_nll
from genmod.runner import build_model
from genmod.training import train_epoch
from helpers import genmod, small_run


@pytest.fixture(scope="module")
def trained(registry, mnist):
    """An MLP VAE trained for 200 steps on real MNIST."""
    torch.manual_seed(0)
    model = build_model(resolve_run_config(registry, model="mlp-vae"), registry, (1, 28, 28))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_epoch(model, optimizer, mnist[0][:20000], 100, torch.Generator().manual_seed(0), epoch=1)
    return model.eval()


def test_one_importance_sample_is_the_elbo_with_monte_carlo_kl(registry, mnist):
    config = resolve_run_config(registry, model="mlp-vae", overrides=["model.prior=mixture"])
    model = build_model(config, registry, (1, 28, 28)).eval()
    x = mnist[1][:32]
    with torch.no_grad():
        torch.manual_seed(4)
        log_px = model.log_likelihood(x, k=1)
        torch.manual_seed(4)
        negative_elbo = model.elbo(x).negative_elbo
    torch.testing.assert_close(-log_px, negative_elbo)


@pytest.mark.slow
def test_one_importance_sample_matches_the_analytic_elbo_on_average(trained, mnist):
    x = mnist[1][:200]
    torch.manual_seed(5)
    with torch.no_grad():
        analytic = torch.stack([trained.elbo(x).negative_elbo.mean() for _ in range(50)]).mean()
    result = importance_sampled_nll(trained, x.repeat(50, 1, 1, 1), k=1)
    assert result.nll == pytest.approx(result.negative_elbo)
    assert result.nll == pytest.approx(float(analytic), abs=0.5)


@pytest.mark.slow
def test_estimate_tightens_as_k_grows_and_is_sane(trained, mnist):
    x = mnist[1][:300]
    nll = {}
    for k in (1, 10, 100, 1000):
        torch.manual_seed(0)
        nll[k] = importance_sampled_nll(trained, x, k=k, max_rows=4096)
    values = [nll[k].nll for k in (1, 10, 100, 1000)]
    assert all(a >= b - 0.05 for a, b in zip(values, values[1:], strict=False)), values
    assert values[0] - values[-1] > 2  # importance sampling really tightens the bound
    best = nll[1000]
    assert 80 < best.nll < 200 and best.nll < best.negative_elbo and 0 < best.nll_se < 5


def test_chunking_does_not_change_the_estimate(trained, mnist):
    x = mnist[1][:20]
    results = []
    for max_rows in (50, 100_000):
        torch.manual_seed(1)
        results.append(importance_sampled_nll(trained, x, k=200, max_rows=max_rows))
    # Different chunkings draw different samples; the estimates agree to well within their noise.
    assert results[0].nll == pytest.approx(results[1].nll, abs=0.2)
    assert results[0].nll != results[1].nll


def test_binarization_modes(registry, data_dir):
    spec = registry.dataset("mnist")
    grey = load_data(spec, DataConfig(limit=500), torch.device("cpu")).as_float()
    static = load_data(spec, DataConfig(limit=500, binarize="static"), torch.device("cpu")).as_float()
    dynamic = load_data(spec, DataConfig(limit=500, binarize="dynamic"), torch.device("cpu")).as_float()
    assert not grey.dynamic_binarization and ((grey.train > 0) & (grey.train < 1)).any()
    assert set(static.train.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(
        static.train,
        load_data(spec, DataConfig(limit=500, binarize="static"), torch.device("cpu")).as_float().train,
    )
    assert dynamic.dynamic_binarization and torch.equal(dynamic.train, grey.train)
    # One fixed binarized test set, whatever the mode or run.
    assert torch.equal(static.test, dynamic.test) and set(dynamic.test.unique().tolist()) == {0.0, 1.0}
    assert (static.train.mean() - grey.train.mean()).abs() < 0.01


def test_eval_command_writes_eval_json(tmp_path):
    out = tmp_path / "run"
    trained = small_run(out, "--epochs", 1, "--set", "data.binarize=dynamic")
    assert trained.exit_code == 0, trained.output
    result = genmod("eval", out, "--k", 50, "--images", 100)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    assert (
        report["k"] == 50 and report["images"] == 100 and report["split"] == "test" and report["epoch"] == 1
    )
    assert 50 < report["nll"] < report["negative_elbo"] < 400 and report["seconds"] > 0
    assert "IS-NLL (k=50)" in result.output
    missing = genmod("eval", tmp_path / "nothing")
    assert missing.exit_code == 2 and "does not exist" in missing.output
