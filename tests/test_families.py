"""Models of other families than the VAE, as outside plugins: the flow, GAN and diffusion
files of docs/writing-plugins.md, trained on 2,000 MNIST images. Each reports the quantity it
offers under its own name, and the model-owned training step resumes bit for bit."""

from __future__ import annotations

import json
import re
import signal
import textwrap
import time
from pathlib import Path

import pytest
import torch

import genmod as api
from genmod import evaluation
from helpers import checkpoint_epoch, cli, genmod, losses

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md"
SMALL = ("--set", "data.limit=2000", "--device", "cpu")


def plugin_from_docs(name: str, folder: Path) -> Path:
    """The plugin file ``name`` as docs/writing-plugins.md writes it, saved into ``folder``."""
    (body,) = re.findall(rf"```python\n(# file: {re.escape(name)}\n.*?)```", DOC.read_text(), re.S)
    path = folder / name
    path.write_text(body)
    return path


@pytest.mark.slow
def test_eval_reports_a_flows_exact_nll_as_the_mean_of_its_log_likelihood(tmp_path, data_dir, monkeypatch):
    plugin, out = plugin_from_docs("flow.py", tmp_path), tmp_path / "flow"
    batch = ("--set", "train.eval_batch_size=200")
    trained = genmod("run", "flow", "--plugin", plugin, "--epochs", 1, *SMALL, *batch, "--out", out)
    assert trained.exit_code == 0, trained.output
    assert losses(out)[0]["quantity"] == "NLL"
    fed: list[int] = []
    as_float = evaluation.as_float
    monkeypatch.setattr(evaluation, "as_float", lambda x: fed.append(len(x)) or as_float(x))
    result = genmod("eval", out, "--plugin", plugin, "--images", 500, "--precision", "fp32")
    assert result.exit_code == 0, result.output
    assert fed == [200, 200, 100]  # the run's train.eval_batch_size
    assert "exact NLL" in result.output and "IS-NLL" not in result.output and "-ELBO" not in result.output
    report = json.loads((out / "eval.json").read_text())
    assert report["quantity"] == "exact NLL" and report["k"] is None and report["negative_elbo"] is None
    model = api.load(out, plugins=[plugin])
    images = api.dataset(out, plugins=[plugin]).test[:500]
    with torch.no_grad():
        mean = float(-model.log_likelihood(images).double().mean())
    assert report["nll"] == pytest.approx(mean, abs=0.01)
    listed = genmod("runs", tmp_path).output
    assert "NLL" in listed and "exact NLL (ep 1, 500 img)" in listed
    assert f"test exact NLL {report['nll']:.2f}" in genmod("info", out, "--plugin", plugin).output
    fast = api.evaluate(
        out, plugins=[plugin], limit=500, precision="fp32", compile=True, output=tmp_path / "c.json"
    )
    assert fast.compiled and fast.nll == pytest.approx(report["nll"], abs=1e-3)


def test_a_gan_has_two_optimizers_no_bound_and_eval_says_so_in_one_line(tmp_path, data_dir):
    plugin, out = plugin_from_docs("gan.py", tmp_path), tmp_path / "gan"
    trained = genmod("run", "gan", "--plugin", plugin, "--epochs", 1, *SMALL, "--out", out)
    assert trained.exit_code == 0, trained.output
    (row,) = losses(out)
    assert row["quantity"] is None and row["train"]["loss"] is None and row["test"] is None
    assert set(row["train"]["terms"]) == {"generator", "discriminator"}
    assert re.search(r"train generator \d+\.\d+ discriminator \d+\.\d+", trained.output)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert set(state["optimizer"]) == set(state["schedule"]) == {"generator", "discriminator"}
    refused = genmod("eval", out, "--plugin", plugin)
    (line,) = refused.output.strip().splitlines()
    assert refused.exit_code == 2 and "has no likelihood or bound to evaluate" in line
    assert "--metric fid" in line
    scored = genmod("eval", out, "--plugin", plugin, "--metric", "fid", "--samples", 500)
    assert scored.exit_code == 0, scored.output
    assert (
        "mnist features, 500 samples drawn in fp32 vs the test split of mnist (10000 images)" in scored.output
    )
    fid = json.loads((out / "eval.json").read_text())["sample_quality"]["fid"]
    assert fid["figures"]["fid"] > 0 and fid["epoch"] == 1 and fid["features"] == "mnist"
    assert "gan" in genmod("runs", tmp_path).output
    assert f"fid {fid['figures']['fid']:.4g} (ep 1, 500 samples)" in genmod("runs", tmp_path).output
    info = genmod("info", out, "--plugin", plugin).output
    assert (
        "trained 1 of 1 epochs" in info and f"fid {fid['figures']['fid']:.4g} (genmod eval of epoch 1" in info
    )
    assert genmod("sample", out, "--plugin", plugin, "-n", 4, "-o", tmp_path / "s.png").exit_code == 0


def test_a_diffusion_model_is_evaluated_with_its_full_bound_under_its_own_name(tmp_path, data_dir):
    plugin, out = plugin_from_docs("diffusion.py", tmp_path), tmp_path / "diffusion"
    trained = genmod(
        "run", "diffusion", "--plugin", plugin, "--epochs", 2, *SMALL, "--out", out,
        "--set", "data.binarize=dynamic", "--set", "train.eval_every=2", "--set", "data.test_limit=300",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    first, second = losses(out)
    assert first["test"] is None and second["test"] is not None  # evaluated every 2nd epoch
    assert second["quantity"] == "variational bound" and "variational bound" in trained.output
    result = genmod("eval", out, "--plugin", plugin, "--images", 100)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    assert report["quantity"] == "variational bound" and report["images"] == 100
    assert 0 < report["nll"] < 784 * 0.7  # below a uniform guess (784 log 2 nats) after 40 steps
    assert "variational bound" in genmod("runs", tmp_path).output


def test_training_sees_what_it_feeds_the_model_binarized_images_and_their_levels(tmp_path, data_dir):
    plugin = tmp_path / "binary.py"
    plugin.write_text(
        textwrap.dedent(
            """
            import torch
            from genmod import Bound, GenerativeModel, ModelConfig, ModelSpec, hookimpl

            class Binary(GenerativeModel):
                def __init__(self, levels):
                    super().__init__()
                    assert levels == 2, levels
                    self.logits = torch.nn.Parameter(torch.zeros(1, 28, 28))

                def loss(self, x):
                    assert set(x.unique().tolist()) <= {0.0, 1.0}, "grey levels reached the model"
                    p = torch.distributions.Bernoulli(logits=self.logits.expand_as(x))
                    nll = -p.log_prob(x).flatten(1).sum(1)
                    return nll.mean(), Bound(nll)

                def sample(self, n):
                    return torch.sigmoid(self.logits).expand(n, 1, 28, 28)

            @hookimpl
            def register_models(register):
                register(ModelSpec(name="binary", config=ModelConfig,
                                   build=lambda config, context: Binary(context.levels)))
            """
        )
    )
    result = genmod(
        "run", "binary", "--plugin", plugin, "--epochs", 1, *SMALL, "--set", "data.binarize=dynamic",
        "--out", tmp_path / "run",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_train_monitor_names_a_reported_metric_and_never_a_test_one(tmp_path, data_dir):
    plugin = plugin_from_docs("gan.py", tmp_path)
    refused = genmod("run", "gan", "--plugin", plugin, *SMALL, "--set", "train.monitor=test/loss")
    assert refused.exit_code == 2 and "the test set never chooses anything" in refused.output
    unknown = genmod("run", "gan", "--plugin", plugin, *SMALL, "--set", "train.monitor=train/loss")
    assert unknown.exit_code == 2
    assert "monitor one of train/generator, train/discriminator" in unknown.output
    out = tmp_path / "watched"
    watched = genmod(
        "run", "gan", "--plugin", plugin, "--epochs", 3, *SMALL, "--out", out,
        "--set", "train.monitor=train/discriminator", "--set", "train.monitor_mode=max",
    )  # fmt: skip
    assert watched.exit_code == 0, watched.output
    values = [row["train"]["terms"]["discriminator"] for row in losses(out)]
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["epoch"] == 1 + values.index(max(values))
    assert re.search(
        rf"best train/discriminator\W+{max(values):.2f} \(epoch {best['epoch']}\)", watched.output
    )


def test_a_gan_follows_its_validation_fid_and_resumes_to_the_same_figures(tmp_path, data_dir):
    plugin = plugin_from_docs("gan.py", tmp_path)
    run = (
        "run", "gan", "--plugin", plugin, *SMALL, "--set", "data.validation=1000",
        "--set", "train.sample_metrics={metrics: [fid, precision-recall], every: 1, samples: 500}",
        "--set", "train.monitor=validation/fid",
    )  # fmt: skip
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    trained = genmod(*run, "--epochs", 3, "--out", whole)
    assert trained.exit_code == 0, trained.output
    fids = [row["validation"]["sample_quality"]["fid"] for row in losses(whole)]
    assert re.search(r"val fid \d+(\.\d+)? precision [\d.]+ recall [\d.]+", trained.output)
    assert torch.load(whole / "best.pt", weights_only=True)["epoch"] == 1 + fids.index(min(fids))
    assert genmod(*run, "--epochs", 1, "--out", parts).exit_code == 0
    assert genmod("run", "--resume", parts, "--plugin", plugin, "--epochs", 3).exit_code == 0
    assert losses(parts) == losses(whole)  # the samples drawn leave training's random state alone


@pytest.mark.slow
def test_a_two_optimizer_model_with_weight_averaging_resumes_bit_for_bit_after_sigkill(tmp_path, data_dir):
    plugin = plugin_from_docs("gan.py", tmp_path)
    run = (
        "run", "gan", "--plugin", plugin, "--epochs", 3, "--device", "cpu", "--set", "data.limit=20000",
        "--set", "train.ema_decay=0.9", "--set", "train.checkpoint_every=70", "--set", "train.schedule=step",
        "--set", "train.lr_step_size=1",
    )  # fmt: skip
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert cli(*run, "--out", whole).wait() == 0
    process = cli(*run, "--out", killed)
    while checkpoint_epoch(killed / "checkpoint.pt") < 1:
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint_epoch(killed / "checkpoint.pt") < 3
    resumed = cli("run", "--resume", killed, "--plugin", plugin)
    assert resumed.wait() == 0, resumed.stderr.read()
    assert losses(whole) == losses(killed)
    a, b = (torch.load(out / "checkpoint.pt", weights_only=True) for out in (whole, killed))
    for part in ("model", "evaluated"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert not all(torch.equal(a["model"][k], a["evaluated"][k]) for k in a["model"])  # it averages
    for name in ("generator", "discriminator"):  # each optimizer's schedule stepped 3 times
        assert a["optimizer"][name]["param_groups"][0]["lr"] == pytest.approx(1e-6)
