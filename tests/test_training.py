import typing

import pytest
import torch
from torch import nn

from genmod.callbacks import WeightAveraging
from genmod.config import DataConfig, Precision, RunConfig, TrainConfig
from genmod.config_loader import resolve_run_config
from genmod.metrics import SplitMetrics
from genmod.precision import autocast_dtype, grad_scaler, precision_name
from genmod.runner import build_model
from genmod.training import evaluate, train_epoch


@pytest.mark.slow
def test_200_steps_on_real_mnist_lower_the_loss_clearly(registry, mnist):
    train, test = mnist
    torch.manual_seed(0)
    config = resolve_run_config(registry, model="mlp-vae")
    model = build_model(config, registry, tuple(train.shape[1:]))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    held_out = test[:2000]

    before = SplitMetrics.from_totals(evaluate(model, held_out, 1000), model.terms)
    position = train_epoch(model, optimizer, train[:20000], 100, torch.Generator().manual_seed(0), epoch=1)
    after = SplitMetrics.from_totals(evaluate(model, held_out, 1000), model.terms)

    assert position.step == 200 and position.totals[-1] == 20000
    assert before.loss > 500  # ~784 ln 2 for an untrained decoder
    assert after.loss < 200 and SplitMetrics.from_totals(position.totals, model.terms).loss < before.loss
    assert 0 < after.terms["kl"] < 50


def test_learning_rate_schedule_follows_the_seed_recipe(registry):
    config = resolve_run_config(registry, model="mlp-vae")
    assert (config.train.lr, config.train.lr_step_size, config.train.lr_gamma) == (1e-3, 10, 0.1)
    assert (config.train.batch_size, config.train.epochs) == (100, 30)
    assert config.model.latent_dim == 20 and config.model.hidden_dims == [400, 400]
    assert (
        isinstance(config, RunConfig)
        and config.data == DataConfig()
        and isinstance(config.train, TrainConfig)
    )


def test_every_precision_setting_names_the_arithmetic_its_reports_show():
    cpu = torch.device("cpu")
    settings = [setting for setting in typing.get_args(Precision) if setting != "auto"]
    assert [precision_name(autocast_dtype(setting, cpu)) for setting in settings] == settings
    assert precision_name(autocast_dtype("auto", cpu)) in ("bf16", "fp32")
    # Only float16 scales its loss; elsewhere the scaler passes calls through.
    assert [grad_scaler(autocast_dtype(s, cpu), cpu).is_enabled() for s in settings] == [
        s == "fp16" for s in settings
    ]


@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() == "DEFAULT", reason="no vector instruction set to lower"
)
def test_kernels_built_for_another_instruction_set_are_kept_apart_and_a_chosen_folder_kept(
    tmp_path, monkeypatch
):
    import os
    import subprocess
    import sys

    from genmod.precision import kernel_cache_dir, separate_kernel_caches

    # A lowered instruction set reusing the native one's kernels computed NaN (genmod.precision).
    script = "import os, genmod.precision as p; p.separate_kernel_caches(); print(os.environ['TORCHINDUCTOR_CACHE_DIR'])"
    environ = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    lowered = subprocess.run(
        [sys.executable, "-c", script],
        env={**environ, "ATEN_CPU_CAPABILITY": "default"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert lowered.endswith("-default") and lowered != kernel_cache_dir()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    separate_kernel_caches()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path)


def test_auto_lays_out_a_float32_conv_model_on_the_cpu_channels_last_and_nothing_else(registry):
    from genmod.precision import memory_format

    cpu = torch.device("cpu")
    conv = build_model(resolve_run_config(registry, model="conv-vae"), registry, (1, 28, 28))
    mlp = build_model(resolve_run_config(registry, model="mlp-vae"), registry, (1, 28, 28))
    assert memory_format("auto", conv, None, cpu) == "channels_last"
    assert memory_format("auto", conv, torch.bfloat16, cpu) == "contiguous"  # measured slower
    assert memory_format("auto", conv, None, torch.device("cuda")) == "contiguous"  # not measured
    assert memory_format("auto", mlp, None, cpu) == "contiguous"  # no convolution weights
    assert memory_format("contiguous", conv, None, cpu) == "contiguous"


@pytest.mark.slow
def test_a_channels_last_run_resumes_bit_for_bit_and_exports_contiguous_weights(tmp_path, data_dir):
    from safetensors.torch import load_file

    from genmod import machine
    from helpers import assert_resume_is_bit_exact, genmod

    small = ("conv-vae", "--set", "train.precision=fp32", "--set", "data.limit=600", "--set",
             "data.validation=100", "--set", "data.test_limit=100", "--device", "cpu")  # fmt: skip
    printed = assert_resume_is_bit_exact(tmp_path / "whole", tmp_path / "split", *small)
    assert "fp32, channels-last" in printed
    assert [s["memory_format"] for s in machine.read(tmp_path / "split")] == ["channels_last"] * 2
    saved = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["model"]
    convolutions = [w for w in saved.values() if w.dim() == 4]
    assert convolutions and all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions)
    exported = genmod("export", tmp_path / "whole", "-o", tmp_path / "model.safetensors")
    assert exported.exit_code == 0, exported.output
    weights = load_file(tmp_path / "model.safetensors")
    assert all(torch.equal(weights[k], saved[k]) and weights[k].is_contiguous() for k in saved)


def test_weight_averaging_forgets_the_untrained_weights_within_its_warm_up():
    weight = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(weight.weight)
    ema = WeightAveraging(weight, decay=0.999)
    for step in range(1, 301):  # weights that move steadily, as early training's do
        weight.weight.data.fill_(float(step))
        ema.on_step_end(weight)
    averaged = ema.evaluated().weight.item()
    # A fixed decay of 0.999 would still be at 42, near the first weights; the warmed-up
    # average trails them by about the horizon of its current decay (270).
    assert 300 - 40 < averaged < 300, averaged
    resumed = WeightAveraging(weight, decay=0.999)
    resumed.averaged.load_state_dict(ema.averaged.state_dict())
    resumed.load_state_dict(ema.state_dict())
    weight.weight.data.fill_(301.0)
    ema.on_step_end(weight)
    resumed.on_step_end(weight)
    assert resumed.evaluated().weight.item() == ema.evaluated().weight.item()
