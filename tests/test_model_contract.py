"""The open model contract (any GenerativeModel), the zoo's HVAE and IAF posterior, and the
training loop's validation split, best checkpoint, early stopping, warm-up and optimizers."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from genmod.config import TrainConfig
from genmod.config_loader import resolve_run_config
from genmod.evaluation import importance_sampled_nll
from genmod.optim import Schedule, make_optimizer
from genmod.runner import build_model, load_trained
from genmod_zoo.flows import MADE, IAFStep
from helpers import assert_resume_is_bit_exact, genmod, losses

SMALL = ("--set", "data.limit=1500", "--set", "data.validation=300", "--set", "data.binarize=dynamic")
MODELS = {
    "hvae": ("hvae", "--set", "model.prior.pseudo_inputs=20", "--set", "model.kl_warmup_epochs=2"),
    "iaf": (
        "beta-vae",
        "--set",
        "model.beta=1",
        "--set",
        "model.encoder=iaf",
        "--set",
        "model.decoder=gated-mlp",
        "--set",
        "model.kl_warmup_epochs=2",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("model", list(MODELS))
def test_new_models_train_validate_evaluate_sample_and_resume_bit_exactly(tmp_path, model, data_dir):
    whole, split = tmp_path / "whole", tmp_path / "split"
    output = assert_resume_is_bit_exact(whole, split, *MODELS[model], *SMALL, "--device", "cpu")
    assert "val" in output and "Run summary" in output

    row = json.loads((whole / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["validation"]["loss"] < 250 and row["test"]["loss"] < 250
    if model == "hvae":
        assert set(row["test"]["terms"]) == {"reconstruction", "kl_z1", "kl_z2"}
    evaluated = genmod("eval", whole, "--k", 20, "--images", 100)
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((whole / "eval.json").read_text())
    assert 50 < report["nll"] < report["negative_elbo"] < 250
    assert genmod("sample", whole, "-n", 4, "-o", tmp_path / "s.png").exit_code == 0
    assert genmod("reconstruct", whole, "-n", 8, "-o", tmp_path / "r.png").exit_code == 0


@pytest.mark.slow
def test_hvae_importance_sampling_is_the_elbo_at_k1_and_tighter_at_k500(registry, mnist):
    config = resolve_run_config(registry, model="hvae", overrides=["model.prior.pseudo_inputs=20"])
    model = build_model(config, registry, (1, 28, 28)).eval()
    x = torch.bernoulli(mnist[1][:200], generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    one = importance_sampled_nll(model, x, k=1)
    with torch.no_grad():
        elbo = torch.cat([model.loss(x)[1].value for _ in range(5)])
    # Both estimate the same -ELBO from independent draws.
    assert abs(one.nll - float(elbo.mean())) < 3 * (one.nll_se + float(elbo.std()) / len(elbo) ** 0.5)
    many = importance_sampled_nll(model, x, k=500)
    assert many.nll < one.nll - 3 * one.nll_se  # tighter, beyond the noise of the k=1 estimate


def test_iaf_log_determinant_matches_a_brute_force_jacobian():
    torch.manual_seed(0)
    dim = 5
    made = MADE(dim, hidden=16, context=3, reverse=True)
    for p in made.parameters():  # far from the identity, so the check has teeth
        torch.nn.init.normal_(p, std=0.5)
    step = IAFStep(made, torch.randn(3))
    z = torch.randn(dim)
    y = step(z)
    jacobian = torch.autograd.functional.jacobian(lambda v: step._call(v), z)
    torch.testing.assert_close(step.log_abs_det_jacobian(z, y), torch.linalg.slogdet(jacobian).logabsdet)
    # Autoregressive in reversed order: y_i depends on z_j only for j >= i (upper triangular).
    assert torch.allclose(jacobian.tril(-1), torch.zeros(dim, dim))
    torch.testing.assert_close(step._inverse(y.clone()), z, atol=1e-5, rtol=1e-5)


def test_iaf_posterior_log_prob_agrees_with_and_without_the_cache(registry):
    config = resolve_run_config(registry, model="beta-vae", overrides=["model.encoder=iaf", "model.beta=1"])
    model = build_model(config, registry, (1, 28, 28))
    q = model.encoder(torch.rand(3, 1, 28, 28))
    z = q.rsample()
    torch.testing.assert_close(q.log_prob(z), q.log_prob(z.clone()), atol=1e-4, rtol=1e-4)


CONSTANT = """
import torch
from genmod import Bound, GenerativeModel, ModelConfig, ModelSpec, hookimpl


class Constant(GenerativeModel):
    terms = ("all",)

    def __init__(self, shape):
        super().__init__()
        self.shape = shape
        self.w = torch.nn.Parameter(torch.zeros(()))

    def loss(self, x):
        value = 100.0 + 0 * self.w + x.flatten(1).sum(1) * 0
        return value.mean(), Bound(value, {"all": value})

    def sample(self, n):
        return torch.zeros(n, *self.shape)


@hookimpl
def register_models(register):
    register(ModelSpec(name="constant", config=ModelConfig, build=lambda config, ctx: Constant(ctx.data_shape)))
"""


def test_early_stopping_keeps_the_best_epoch_and_eval_refuses_a_model_without_weights(tmp_path, data_dir):
    plugin = tmp_path / "constant.py"
    plugin.write_text(textwrap.dedent(CONSTANT))
    out = tmp_path / "run"
    result = genmod(
        "run", "constant", "--plugin", plugin, "--out", out, "--epochs", 10, *SMALL,
        "--set", "train.early_stopping=2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "stopped early" in result.output
    assert len(losses(out)) == 3  # epoch 1 is best; two epochs without improvement end the run
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == 1
    resumed = genmod("run", "--resume", out, "--plugin", plugin)
    assert resumed.exit_code == 0 and len(losses(out)) == 3
    refused = genmod("eval", out, "--plugin", plugin)
    assert refused.exit_code == 2
    (line,) = refused.output.strip().splitlines()
    assert "has no likelihood or bound to evaluate" in line


@pytest.mark.slow
def test_eval_uses_the_best_checkpoint_unless_asked_for_the_last(tmp_path, registry, data_dir):
    out = tmp_path / "run"
    assert genmod("run", "mlp-vae", "--epochs", 3, *SMALL, "--out", out).exit_code == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = min(rows, key=lambda row: row["validation"]["loss"])["epoch"]
    assert load_trained(out, registry, torch.device("cpu"))[2] == best
    assert load_trained(out, registry, torch.device("cpu"), "last")[2] == 3
    genmod("eval", out, "--k", 2, "--images", 10, "--checkpoint", "last")
    assert json.loads((out / "eval.json").read_text())["epoch"] == 3

    plain = tmp_path / "plain"
    assert genmod("run", "mlp-vae", "--epochs", 1, "--set", "data.limit=300", "--out", plain).exit_code == 0
    refused = genmod("sample", plain, "--checkpoint", "best")
    assert refused.exit_code == 1 and "--checkpoint last" in refused.output
    for command in ("sample", "export"):
        unknown = genmod(command, plain, "--checkpoint", "worst")
        assert unknown.exit_code == 2 and "--checkpoint must be best or last, not 'worst'" in unknown.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--set", "train.early_stopping=5"),
            "early stopping watches validation/loss: set data.validation",
        ),
        (("--set", "train.schedule=plateau"), "the plateau schedule watches validation/loss"),
        (("--set", "train.optimizer=sgd"), "config key 'train.optimizer' = 'sgd'"),
        (("--set", "train.optimiser=adamw"), "did you mean 'train.optimizer'?"),
        (("--set", "train.lr_warmup_epochs=-1"), "config key 'train.lr_warmup_epochs' = -1"),
        (("--set", "model.free_bits=-0.5"), "config key 'model.free_bits' = -0.5"),
        (("--set", "data.validation=70000"), "data.validation = 70000 leaves no training images"),
    ],
)
def test_new_config_keys_are_validated_in_one_line(tmp_path, args, message, data_dir):
    result = genmod("run", "mlp-vae", *args, "--out", tmp_path / "run")
    assert result.exit_code != 0
    (line,) = result.output.strip().splitlines()
    assert message in line and not (tmp_path / "run").exists()


def test_schedules_follow_their_definitions():
    def lrs(**settings) -> list[float]:
        train = TrainConfig(lr=1.0, epochs=6, **settings)
        optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(1))], train)
        schedule = Schedule(optimizer, train)
        seen = []
        for loss in (5, 4, 4, 4, 4, 4):
            seen.append(optimizer.param_groups[0]["lr"])
            schedule.step(loss)
        return seen

    assert lrs(schedule="step", lr_step_size=2, lr_gamma=0.5) == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert lrs(schedule="exponential", lr_gamma=0.5)[:3] == [1, 0.5, 0.25]
    assert lrs(lr_warmup_epochs=3) == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1])
    cosine = lrs(schedule="cosine", lr_min=0.1)
    assert cosine[0] == 1 and cosine == sorted(cosine, reverse=True) and cosine[-1] > 0.1
    # More than lr_patience epochs without a better loss: 5, 4 (better), 4, 4 -> lowered.
    assert lrs(schedule="plateau", lr_patience=1, lr_gamma=0.5) == [1, 1, 1, 1, 0.5, 0.5]
    assert (
        type(make_optimizer([torch.nn.Parameter(torch.zeros(1))], TrainConfig(optimizer="adamax"))).__name__
        == "Adamax"
    )


def test_updates_above_the_threshold_are_skipped_and_counted(tmp_path, data_dir):
    out = tmp_path / "run"
    result = genmod(
        "run", "mlp-vae", "--epochs", 1, "--set", "data.limit=500", "--set", "train.skip_updates_above=1e-9",
        "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = losses(out)
    assert row["skipped"] == 5 and "5 skipped" in result.output
    clipped = tmp_path / "clipped"
    genmod(
        "run",
        "mlp-vae",
        "--epochs",
        1,
        "--set",
        "data.limit=500",
        "--set",
        "train.clip_grad_norm=1",
        "--out",
        clipped,
    )
    assert losses(clipped)[0]["skipped"] == 0 and losses(clipped)[0]["train"]["loss"] < 540


def test_kl_warm_up_follows_the_training_progress(registry):
    config = resolve_run_config(
        registry, model="mlp-vae", overrides=["model.kl_warmup_epochs=4", "model.beta=2"]
    )
    model = build_model(config, registry, (1, 28, 28))
    from genmod import TrainingProgress

    weights = []
    for epoch, step in ((1, 0), (2, 50), (5, 0), (9, 3)):
        model.progress = TrainingProgress(epoch=epoch, step=step, steps_per_epoch=100)
        weights.append(model.kl_weight())
    assert weights == [0.0, 2 * 1.5 / 4, 2.0, 2.0]


def test_info_lists_the_train_and_data_keys():
    result = genmod("info", "train")
    assert result.exit_code == 0
    for key in ("optimizer", "schedule", "early_stopping", "skip_updates_above", "lr_warmup_epochs"):
        assert key in result.output
    assert "validation" in genmod("info", "data").output
    model = genmod("info", "mlp-vae").output
    assert "kl_warmup_epochs" in model and "free_bits" in model


def test_every_public_function_returns_a_type_genmod_exports():
    """``genmod.registry()`` returns a ``genmod.Registry``, and so on: nothing a user holds has
    a type they cannot import from the facade."""
    import typing
    from pathlib import Path

    import genmod

    exported = {name: getattr(genmod, name) for name in genmod.__all__ if name != "__version__"}
    functions = [name for name, value in exported.items() if callable(value) and not isinstance(value, type)]
    for name in (
        "train", "load", "evaluate", "registry", "dataset", "export", "sample_quality", "open_run",
        "summarize", "sweep", "train_features",
    ):  # fmt: skip
        assert name in functions
        returned = typing.get_type_hints(exported[name], localns=exported)["return"]
        for kind in typing.get_args(returned) or (returned,):
            assert kind in exported.values() or kind in (Path, type(None)), (name, kind)


def test_the_facade_lists_each_public_name_once_for_run_time_and_once_for_type_checkers():
    """``_EXPORTS`` (loaded on first use) and the ``TYPE_CHECKING`` imports name the same set."""
    import ast

    import genmod

    tree = ast.parse(Path(genmod.__file__).read_text())
    (block,) = [
        node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    imported = {
        (alias.name, node.module)
        for node in ast.walk(block)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert imported == set(genmod._EXPORTS.items())
