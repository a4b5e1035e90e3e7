"""The shipped priors, likelihoods and model families of genmod-zoo."""

import json
import math
import re

import pytest
import torch
from torch.distributions import ContinuousBernoulli, Normal

from genmod.config_loader import resolve_run_config
from genmod.runner import build_model
from genmod.vae.likelihoods import BernoulliLikelihood
from genmod_mlp_vae import MLPEncoder
from genmod_zoo.conv import ConvDecoder, ConvEncoder, ConvOptions
from genmod_zoo.likelihoods import ContinuousBernoulliLikelihood, GaussianLikelihood
from genmod_zoo.priors import MixtureOfGaussiansPrior, VampPrior
from helpers import assert_resume_is_bit_exact, genmod


def grid_mass(log_density, half_width=8.0, points=801) -> float:
    axis = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    return float(log_density(grid).exp().sum() * (axis[1] - axis[0]) ** 2)


def log_gaussian_mixture(z, means, scales, log_weights):
    """log Σ_k w_k N(z; μ_k, diag σ_k²), written out by hand."""
    diff = (z.unsqueeze(-2) - means) / scales
    log_n = -0.5 * (diff**2).sum(-1) - scales.log().sum(-1) - 0.5 * means.shape[-1] * math.log(2 * math.pi)
    return torch.logsumexp(log_n + log_weights, dim=-1)


def test_mixture_prior_matches_direct_computation_and_normalises():
    torch.manual_seed(0)
    prior = MixtureOfGaussiansPrior(latent_dim=2, components=3).double()
    with torch.no_grad():
        prior.log_scales.copy_(torch.tensor([[0.0, -0.5], [0.3, 0.1], [-0.2, 0.0]]))
        prior.logits.copy_(torch.tensor([0.5, -1.0, 0.0]))
        z = torch.randn(50, 2, dtype=torch.float64)
        expected = log_gaussian_mixture(z, prior.means, prior.log_scales.exp(), prior.logits.log_softmax(0))
        torch.testing.assert_close(prior.log_prob(z), expected)
        assert grid_mass(prior.log_prob) == pytest.approx(1.0, abs=1e-3)
    assert prior.sample(7).shape == (7, 2)


def test_vampprior_is_the_mean_of_encoded_pseudo_inputs():
    torch.manual_seed(0)
    encoder = MLPEncoder((1, 4, 4), [8], latent_dim=2).double()
    prior = VampPrior(encoder, (1, 4, 4), pseudo_inputs=5, mean=0.5, std=0.1).double()
    with torch.no_grad():
        q = encoder(prior.pseudo_inputs)
        z = torch.randn(20, 2, dtype=torch.float64)
        expected = torch.logsumexp(q.log_prob(z.unsqueeze(1)), dim=1) - math.log(5)
        torch.testing.assert_close(prior.log_prob(z), expected)
        assert grid_mass(prior.log_prob) == pytest.approx(1.0, abs=1e-3)
    assert set(dict(prior.named_parameters())) >= {"pseudo_logits"}


def test_continuous_bernoulli_includes_its_normaliser_and_is_stable_at_one_half():
    logits = torch.tensor([[-3.0, -1e-4, 0.0, 1e-4, 2.0]])
    x = torch.tensor([[0.1, 0.7, 0.3, 0.95, 0.5]])
    got = ContinuousBernoulliLikelihood(1)(logits).log_prob(x)
    lam = torch.sigmoid(logits).double()
    log_c = torch.where(
        (lam - 0.5).abs() < 1e-3,
        torch.full_like(lam, math.log(2)),
        torch.log(2 * torch.atanh(1 - 2 * lam) / (1 - 2 * lam)),
    )
    expected = (log_c + x * lam.log() + (1 - x) * (1 - lam).log()).sum(-1)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got, ContinuousBernoulli(logits=logits).log_prob(x).sum(-1))
    assert torch.isfinite(got).all()


def test_gaussian_likelihood_fixed_and_learned():
    mean, x = torch.randn(3, 1, 2, 2), torch.rand(3, 1, 2, 2)
    fixed = GaussianLikelihood((1, 2, 2), scale=0.2, learned=False)
    expected = Normal(mean, 0.2).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(fixed(mean).log_prob(x), expected)
    hand = (-0.5 * ((x - mean) / 0.2) ** 2 - math.log(0.2) - 0.5 * math.log(2 * math.pi)).sum((1, 2, 3))
    torch.testing.assert_close(fixed(mean).log_prob(x), hand)
    learned = GaussianLikelihood((1, 2, 2), scale=0.2, learned=True)
    assert [n for n, _ in learned.named_parameters()] == ["log_scale"] and not list(fixed.parameters())


def test_bernoulli_likelihood_is_binary_cross_entropy():
    logits, x = torch.randn(4, 1, 3, 3), torch.rand(4, 1, 3, 3)
    p = torch.sigmoid(logits)
    hand = (x * p.log() + (1 - x) * (1 - p).log()).sum((1, 2, 3))
    torch.testing.assert_close(BernoulliLikelihood(3)(logits).log_prob(x), hand, rtol=1e-4, atol=1e-4)


def built(registry, mnist, model, *overrides, seed=0):
    config = resolve_run_config(registry, model=model, overrides=overrides)
    torch.manual_seed(seed)
    return build_model(config, registry, (1, 28, 28))


def test_iwae_with_one_sample_is_the_elbo(registry, mnist):
    x = mnist[1][:64]
    iwae = built(registry, mnist, "iwae", "model.k=1", "model.prior=mixture")
    vae = built(registry, mnist, "beta-vae", "model.beta=1", "model.prior=mixture")
    vae.load_state_dict(iwae.state_dict())
    torch.manual_seed(3)
    iwae_loss, _ = iwae.loss(x)
    torch.manual_seed(3)
    vae_loss, _ = vae.loss(x)
    torch.testing.assert_close(iwae_loss, vae_loss)
    many = built(registry, mnist, "iwae", "model.k=50", "model.prior=mixture")
    many.load_state_dict(iwae.state_dict())
    # The k-sample bound is tighter: its mean loss is below the single-sample one.
    with torch.no_grad():
        assert many.loss(x)[0] < torch.stack([iwae.loss(x)[0] for _ in range(20)]).mean()


def test_beta_one_is_the_plain_vae_and_beta_weights_the_kl(registry, mnist):
    x = mnist[1][:64]
    reference = built(registry, mnist, "mlp-vae")
    beta_1 = built(registry, mnist, "beta-vae", "model.beta=1")
    beta_4 = built(registry, mnist, "beta-vae", "model.beta=4")
    for model in (beta_1, beta_4):
        model.load_state_dict(reference.state_dict())
    losses = {}
    for name, model in (("ref", reference), ("b1", beta_1), ("b4", beta_4)):
        torch.manual_seed(5)
        losses[name] = model.loss(x)
    torch.testing.assert_close(losses["b1"][0], losses["ref"][0])
    terms = losses["b4"][1].terms
    torch.testing.assert_close(losses["b4"][0], (terms["reconstruction"] + 4 * terms["kl"]).mean())


def test_conv_layers_halve_the_image_once_per_channels_entry():
    options = ConvOptions(channels=[8, 16, 32], hidden=24)
    encoder = ConvEncoder((3, 64, 64), 5, options)
    decoder = ConvDecoder((7, 64, 64), 5, options)
    # Three halvings take 64x64 to 8x8 maps before the fully connected layer.
    assert [m.in_features for m in encoder.net if isinstance(m, torch.nn.Linear)] == [32 * 8 * 8, 24]
    x = torch.rand(2, 3, 64, 64)
    assert encoder(x).mean.shape == (2, 5)
    assert decoder(torch.randn(4, 2, 5)).shape == (4, 2, 7, 64, 64)
    with pytest.raises(ValueError, match="multiples of 8, got shape \\(1, 28, 28\\)"):
        ConvEncoder((1, 28, 28), 5, options)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("mlp-vae", "--set", "model.prior=vampprior", "--set", "model.likelihood=continuous-bernoulli"),
        ("iwae",),
        ("conv-vae", "--set", "model.prior=mixture", "--set", "model.prior.components=4"),
        ("beta-vae", "--set", "model.likelihood.name=gaussian", "--set", "model.likelihood.variance=learned"),
    ],
    ids=["vampprior+cb", "iwae", "conv+mixture", "beta+gaussian"],
)
def test_every_family_trains_from_the_cli(tmp_path, args):
    out = tmp_path / "run"
    result = genmod("run", *args, "--epochs", 1, "--set", "data.limit=500", "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    row = json.loads((out / "metrics.jsonl").read_text())
    assert math.isfinite(row["test"]["loss"])
    # The IWAE bound has no parts; every VAE's has a reconstruction term and a positive KL.
    assert row["test"]["terms"] == {} if args[0] == "iwae" else row["test"]["terms"]["kl"] > 0


# The gated PixelCNN ----------------------------------------------------------------------------
def test_a_pixelcnn_logit_depends_on_no_later_pixel_and_has_no_blind_spot():
    from genmod_zoo.pixelcnn import PixelCNN, PixelCNNConfig

    torch.manual_seed(0)
    model = PixelCNN(PixelCNNConfig(name="pixelcnn", channels=8, layers=4, head=16), (1, 12, 12))
    order = torch.arange(144).view(12, 12)
    for i, j in [(0, 0), (0, 5), (6, 5), (6, 11), (11, 0)]:
        x = torch.rand(1, 1, 12, 12, requires_grad=True)
        model.logits(x)[0, 0, i, j].backward()
        seen = x.grad[0, 0] != 0
        assert not (seen & (order >= 12 * i + j)).any(), (i, j)  # nothing at or after the pixel
        if (i, j) == (6, 5):  # within the receptive field, every earlier pixel: those above
            assert int(seen.sum()) == 12 * i + j  # and to the right too (a masked PixelCNN's blind spot)


def test_a_pixelcnn_draws_each_pixel_from_the_whole_networks_logit_computing_a_row_at_a_time():
    from genmod_zoo.pixelcnn import PixelCNN, PixelCNNConfig

    torch.manual_seed(0)
    model = PixelCNN(PixelCNNConfig(name="pixelcnn", channels=8, layers=4, head=16), (1, 12, 12)).eval()
    x = (torch.rand(3, 1, 12, 12) < 0.5).float()
    with torch.no_grad():
        for weight in model.parameters():
            weight.mul_(3)  # logits far from 0, which a draw from a wrong one would show
        whole = model.logits(x)
        for i in range(12):
            row = model.row_logits(x[:, :, i : i + 1], model.features_above(x[:, :, :i], 12))
            torch.testing.assert_close(row[:, :, 0], whole[:, :, i])
        torch.manual_seed(1)
        drawn = model.sample(3)
        torch.manual_seed(1)
        expected = torch.zeros(3, 1, 12, 12)
        for i in range(12):
            for j in range(12):  # the definition: every pixel from the whole network's logit
                expected[:, :, i, j] = torch.bernoulli(torch.sigmoid(model.logits(expected)[:, :, i, j]))
    assert torch.equal(drawn, expected) and 0 < float(drawn.mean()) < 1


def test_a_pixelcnn_refuses_images_that_are_not_binary_in_one_line(tmp_path):
    result = genmod("run", "pixelcnn", "--set", "data.binarize=none", "--epochs", 1, "--out", tmp_path / "p")
    (line,) = result.output.strip().splitlines()
    assert result.exit_code == 2 and "pixelcnn models binary images: set data.binarize=dynamic" in line


def test_a_pixelcnn_trains_reports_its_exact_nll_and_samples(tmp_path, data_dir):
    out = tmp_path / "pixelcnn"
    small = ("--set", "model.channels=8", "--set", "model.layers=2", "--set", "model.head=16",
             "--set", "train.samples=4")  # fmt: skip
    trained = genmod("run", "pixelcnn", "--epochs", 1, "--set", "data.limit=1000", "--set", "data.validation=200",
                     "--set", "data.test_limit=200", *small, "--out", out, "--device", "cpu")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert json.loads((out / "metrics.jsonl").read_text())["quantity"] == "NLL"
    evaluated = genmod("eval", out, "--images", 100, "--precision", "fp32")
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((out / "eval.json").read_text())
    assert report["quantity"] == "exact NLL" and report["k"] is None
    import genmod as api

    model = api.load(out)
    images = api.dataset(out).test[:100]  # binarized once, as evaluation binarizes them
    assert set(torch.unique(images).tolist()) == {0.0, 1.0}
    with torch.no_grad():
        assert report["nll"] == pytest.approx(float(-model.log_likelihood(images).double().mean()), abs=0.01)
        assert set(torch.unique(model.sample(2)).tolist()) <= {0.0, 1.0}


# The DCGAN --------------------------------------------------------------------------------------
def test_a_dcgan_trains_on_its_validation_fid_and_is_judged_by_samples_only(tmp_path, data_dir):
    out = tmp_path / "dcgan"
    small = ("--set", "data.limit=1500", "--set", "data.validation=500", "--set", "model.channels=8",
             "--set", "train.sample_metrics={metrics: [fid], every: 1, samples: 300}", "--device", "cpu")  # fmt: skip
    trained = genmod("run", "dcgan", "--epochs", 2, *small, "--out", out)
    assert trained.exit_code == 0, trained.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["quantity"] is None and all(row["validation"]["sample_quality"]["fid"] > 0 for row in rows)
    refused = genmod("eval", out)
    (line,) = refused.output.strip().splitlines()
    assert refused.exit_code == 2 and "--metric fid" in line
    assert genmod("eval", out, "--metric", "precision-recall", "--samples", 300).exit_code == 0
    assert "precision-recall" in json.loads((out / "eval.json").read_text())["sample_quality"]


def test_a_dcgan_refuses_images_whose_sides_are_not_multiples_of_four(registry):
    from genmod.errors import ConfigError
    from genmod.specs import ModelContext
    from genmod_zoo.dcgan import DCGANConfig, build

    context = ModelContext(data_shape=(1, 30, 30), build_component=registry.build_component)
    with pytest.raises(ConfigError, match="H and W multiples of 4, got \\(1, 30, 30\\)"):
        build(DCGANConfig(name="dcgan"), context)


# The variational diffusion model ----------------------------------------------------------------
def test_a_fresh_diffusion_models_bound_terms_follow_their_definitions():
    from torch.distributions import kl_divergence

    from genmod_zoo.diffusion import VDM, DiffusionConfig

    torch.manual_seed(0)
    model = VDM(DiffusionConfig(name="diffusion", channels=8, blocks=1), (1, 8, 8))
    x = torch.randint(0, 256, (500, 1, 8, 8)).float() / 255
    with torch.no_grad():
        terms = model.evaluation_bound(x).terms
    # The fresh network predicts eps_hat = 0, so the diffusion term is gamma'/2 E||eps||^2.
    assert float(terms["diffusion"].mean()) == pytest.approx(0.5 * 18.3 * 64, rel=0.02)
    e = (torch.round(x * 255) * 2 + 1) / 256 - 1
    var_1 = torch.sigmoid(torch.tensor(5.0))
    kl = kl_divergence(Normal((1 - var_1).sqrt() * e, var_1.sqrt()), Normal(0.0, 1.0)).sum((1, 2, 3))
    assert torch.allclose(terms["prior"], kl, atol=1e-4)
    assert 0 < float(terms["decoder"].mean()) < 0.01 * 64  # sigma_0 is far below a bin's width


def test_a_diffusion_model_reports_its_bound_in_bits_per_dim_and_samples_with_ddim(tmp_path, data_dir):
    out = tmp_path / "diffusion"
    small = ("--set", "data.limit=1000", "--set", "data.validation=200", "--set", "data.test_limit=200",
             "--set", "model.channels=8", "--set", "model.blocks=1", "--set", "train.eval_every=1",
             "--set", "model.steps=10", "--set", "train.samples=4")  # fmt: skip
    trained = genmod("run", "diffusion", "--epochs", 1, *small, "--out", out, "--device", "cpu")
    assert trained.exit_code == 0, trained.output
    assert re.search(r"test variational bound \(bits/dim\)\W+\d+\.\d{3}", trained.output)
    evaluated = genmod("eval", out, "--images", 50)
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((out / "eval.json").read_text())
    assert report["quantity"] == "variational bound"
    assert report["bits_per_dim"] == pytest.approx(report["nll"] / (784 * math.log(2)))
    for sampler in ("ddim", "ancestral"):
        drawn = genmod("sample", out, "-n", 4, "--option", f"sampler={sampler}", "--option", "steps=5",
                       "-o", tmp_path / f"{sampler}.png")  # fmt: skip
        assert drawn.exit_code == 0, drawn.output
    refused = genmod("sample", out, "--option", "sampler=euler")
    (line,) = refused.output.strip().splitlines()
    assert refused.exit_code == 2 and "sampling option sampler" in line and "takes sampler, steps" in line


# Glow ---------------------------------------------------------------------------------------------
def test_glows_log_density_is_the_change_of_variables_of_its_transform():
    from genmod_zoo.glow import Glow, GlowConfig

    torch.manual_seed(0)
    model = Glow(GlowConfig(name="glow", levels=1, blocks=2, hidden=8), (1, 4, 4)).double()
    y = torch.rand(3, 1, 4, 4, dtype=torch.float64) - 0.5
    model.flow.log_prob(y, None)  # the activation norms initialise from this first batch
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # not the identity: a transform worth checking
    for image in y:

        def latents(flat: torch.Tensor) -> torch.Tensor:
            z, _ = model.flow.inverse_and_log_det(flat.view(1, 1, 4, 4))
            return torch.cat([part.flatten() for part in z])

        jacobian = torch.autograd.functional.jacobian(latents, image.flatten())
        z = latents(image.flatten())
        (q0,) = model.flow.q0
        base = q0.log_prob(z.view(1, *q0.shape))
        expected = base + torch.linalg.slogdet(jacobian).logabsdet
        with torch.no_grad():
            assert float(model.flow.log_prob(image.unsqueeze(0), None)) == pytest.approx(
                float(expected), abs=1e-6
            )


def test_glows_logit_preprocessing_adds_the_log_determinant_of_its_map():
    from genmod_zoo.glow import LEVELS, Glow, GlowConfig

    torch.manual_seed(0)
    a = 0.01
    model = Glow(GlowConfig(name="glow", levels=1, blocks=2, hidden=8, logit=a), (1, 4, 4))
    x = torch.randint(0, LEVELS, (3, 1, 4, 4)).float() / (LEVELS - 1)
    model._nll(x)  # the activation norms initialise from this first batch
    torch.manual_seed(1)
    with torch.no_grad():
        nll = model._nll(x)
    torch.manual_seed(1)
    k = torch.round(x * (LEVELS - 1))
    v = (k + torch.rand_like(k)) / LEVELS  # the same dequantization draw

    def pixel(value: torch.Tensor) -> torch.Tensor:
        return torch.logit(a + (1 - 2 * a) * value)

    slopes = torch.func.vmap(torch.func.grad(pixel))(v.flatten()).view_as(v)
    with torch.no_grad():
        density = model.flow.log_prob(pixel(v), None) + slopes.log().flatten(1).sum(1)
    assert torch.allclose(nll, -density + 16 * math.log(LEVELS), rtol=1e-5)
    assert model.sample(2).shape == (2, 1, 4, 4)


def test_a_glow_reports_its_dequantized_bound_in_bits_per_dim_and_samples(tmp_path, data_dir):
    out = tmp_path / "glow"
    small = ("--set", "data.limit=1000", "--set", "data.validation=200", "--set", "data.test_limit=200",
             "--set", "model.blocks=2", "--set", "model.hidden=16")  # fmt: skip
    trained = genmod("run", "glow", "--epochs", 1, *small, "--out", out, "--device", "cpu")
    assert trained.exit_code == 0, trained.output
    assert re.search(r"test dequantized NLL \(bits/dim\)\W+\d+\.\d{3}", trained.output)
    evaluated = genmod("eval", out, "--images", 100)
    assert evaluated.exit_code == 0 and "dequantized NLL, bits/dim" in evaluated.output, evaluated.output
    report = json.loads((out / "eval.json").read_text())
    assert report["quantity"] == "dequantized NLL" and report["k"] is None
    assert genmod("sample", out, "-n", 4, "-o", tmp_path / "s.png").exit_code == 0
    refused = genmod("run", "glow", "--set", "data.binarize=dynamic", "--out", tmp_path / "b")
    assert refused.exit_code == 2 and "glow models 8-bit images" in refused.output


# Every new family resumes bit for bit -------------------------------------------------------------
# (The PixelCNN trains through the automatic loop with nothing of its own to checkpoint, as the
# VAEs do, whose resume tests cover it; these have state or randomness of their own: Glow's
# activation norms initialised from the first batch, the diffusion model's draws of t, the
# DCGAN's two optimizers and the samples of its validation FID.)
FAMILIES = {
    "glow": ("--set", "model.blocks=2", "--set", "model.hidden=16"),
    "diffusion": (
        "--set",
        "model.channels=8",
        "--set",
        "model.blocks=1",
        "--set",
        "model.steps=5",
        "--set",
        "train.eval_every=1",
    ),  # fmt: skip
    "dcgan": (
        "--set",
        "model.channels=8",
        "--set",
        "train.sample_metrics={metrics: [fid], every: 1, samples: 100}",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_familys_run_resumes_bit_for_bit(family, tmp_path, data_dir):
    small = (*FAMILIES[family], "--set", "data.limit=600", "--set", "data.validation=100",
             "--set", "data.test_limit=100", "--set", "train.samples=4", "--device", "cpu")  # fmt: skip
    assert_resume_is_bit_exact(tmp_path / "whole", tmp_path / "split", family, *small)
