"""A variational diffusion model of 8-bit images (Kingma et al., 2021, "Variational diffusion
models"), with its continuous-time variational bound on the discrete data.

The forward process is ``z_t = alpha_t x + sigma_t eps`` for ``t`` in [0, 1], with ``x`` the
image scaled to [-1, 1], ``alpha_t^2 = sigmoid(-gamma(t))``, ``sigma_t^2 = sigmoid(gamma(t))``
and the log-SNR ``-gamma(t)`` falling linearly (:class:`LogSNRSchedule`, kept apart from the
network as diffusers keeps its schedulers). ``-log p(x)`` is bounded by three terms, in nats:

- **decoder**: ``-log p(x | z_0)``, each pixel a categorical over its 256 values whose logits
  are the Gaussian densities of ``z_0`` around each value's ``alpha_0 x_v``: exact on the
  discrete data, no dequantization;
- **diffusion**: the continuous-time limit ``1/2 E_t[gamma'(t) ||eps - eps_hat(z_t, t)||^2]``,
  estimated with ``t`` drawn uniformly (low-discrepancy over a batch);
- **prior**: ``KL(q(z_1 | x) || N(0, I))``.

Training draws one ``t`` per image; ``genmod eval`` averages ``evaluation_draws`` draws per
image, and reports the bound's mean over images with its standard error (which includes the
Monte Carlo noise), in nats and bits per dimension. Sampling is ancestral over ``steps``
steps, or deterministic DDIM (Song et al., 2021): ``genmod sample RUN --option sampler=ddim``.

The noise-prediction network is a small U-Net of torch modules. diffusers' ``UNet2DModel`` was
tried: importing it imports transformers where that is installed, whose pins on
huggingface-hub conflict with diffusers' own (seen on this project's machine), and its
schedulers are discrete-time DDPM/DDIM ones, not the continuous log-SNR schedule whose bound
this model reports.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from genmod import Bound, ConfigError, GenerativeModel, ModelConfig, ModelContext

LEVELS = 256


class DiffusionConfig(ModelConfig):
    channels: int = Field(
        32, ge=8, multiple_of=8, description="Feature maps at full resolution (twice as many at half)."
    )
    blocks: int = Field(2, ge=1, description="Residual blocks per resolution.")
    gamma_min: float = Field(-13.3, description="log-SNR -gamma at t = 0 is -gamma_min: the least noise.")
    gamma_max: float = Field(5.0, description="gamma at t = 1: the most noise.")
    steps: int = Field(250, ge=1, description="Sampling steps, unless genmod sample --option steps=N.")
    evaluation_draws: int = Field(8, ge=1, description="Times t is drawn per image by genmod eval.")


class SampleOptions(BaseModel):
    """``genmod sample --option KEY=VALUE``."""

    model_config = ConfigDict(extra="forbid")
    sampler: Literal["ancestral", "ddim"] = Field(
        "ancestral", description="ancestral, or deterministic DDIM."
    )
    steps: int | None = Field(None, ge=1, description="Sampling steps (default: model.steps).")


class LogSNRSchedule(nn.Module):
    """``gamma(t) = gamma_min + (gamma_max - gamma_min) t``: the noise schedule, no weights."""

    def __init__(self, gamma_min: float, gamma_max: float) -> None:
        super().__init__()
        self.gamma_min, self.gamma_max = gamma_min, gamma_max

    def forward(self, t: Tensor) -> Tensor:
        return self.gamma_min + (self.gamma_max - self.gamma_min) * t

    @property
    def slope(self) -> float:
        return self.gamma_max - self.gamma_min


class _Block(nn.Module):
    """A residual block whose features are shifted and scaled by the time embedding."""

    def __init__(self, c_in: int, c_out: int, embedding: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(embedding, 2 * c_out)
        self.norm2, self.conv2 = nn.GroupNorm(8, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # starts as the identity on the skip path
        nn.init.zeros_(self.conv2.bias)  # type: ignore[arg-type]  # Conv2d has a bias unless asked
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h: Tensor, embedding: Tensor) -> Tensor:
        out = self.conv1(F.silu(self.norm1(h)))
        scale, shift = self.film(embedding)[:, :, None, None].chunk(2, dim=1)
        out = self.conv2(F.silu(self.norm2(out) * (1 + scale) + shift))
        return self.skip(h) + out


class UNet(nn.Module):
    """``eps_hat(z_t, gamma_t)``: full and half resolution, ``blocks`` blocks each way, the
    log-SNR embedded with sinusoids."""

    def __init__(self, channels: int, c: int, blocks: int) -> None:
        super().__init__()
        self.embedding = 4 * c
        self.time = nn.Sequential(
            nn.Linear(c, self.embedding), nn.SiLU(), nn.Linear(self.embedding, self.embedding)
        )
        self.c = c
        self.inp = nn.Conv2d(channels, c, 3, padding=1)
        self.down = nn.ModuleList(_Block(c, c, self.embedding) for _ in range(blocks))
        self.pool = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.middle = nn.ModuleList(_Block(2 * c, 2 * c, self.embedding) for _ in range(blocks))
        self.upsample = nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1)
        self.up = nn.ModuleList(_Block(2 * c if i == 0 else c, c, self.embedding) for i in range(blocks))
        last = nn.Conv2d(c, channels, 3, padding=1)
        nn.init.zeros_(last.weight)  # a fresh network predicts eps_hat = 0
        nn.init.zeros_(last.bias)  # type: ignore[arg-type]  # Conv2d has a bias unless asked
        self.out = nn.Sequential(nn.GroupNorm(8, c), nn.SiLU(), last)

    def forward(self, z: Tensor, gamma: Tensor) -> Tensor:
        # gamma spans about [-13, 5]: scaled to about [0, 1] before the sinusoids.
        position = (gamma + 13.3) / 18.3 * 1000
        frequencies = torch.exp(-math.log(10000) * torch.arange(self.c // 2, device=z.device) / (self.c // 2))
        angles = position[:, None] * frequencies[None]
        embedding = self.time(torch.cat([angles.sin(), angles.cos()], dim=1))
        h = self.inp(z)
        for block in self.down:
            h = block(h, embedding)
        skip = h
        h = self.pool(h)
        for block in self.middle:
            h = block(h, embedding)
        h = self.upsample(h)[..., : skip.shape[-2], : skip.shape[-1]]
        h = torch.cat([h, skip], dim=1)
        for block in self.up:
            h = block(h, embedding)
        eps: Tensor = self.out(h)
        return eps


class VDM(GenerativeModel):
    """A variational diffusion model: its bound in nats and bits per dimension."""

    bound = "variational bound"
    terms = ("decoder", "diffusion", "prior")
    sample_options = SampleOptions

    def __init__(self, config: DiffusionConfig, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.data_shape, self.steps, self.draws = data_shape, config.steps, config.evaluation_draws
        self.evaluation_cost = config.evaluation_draws
        self.schedule = LogSNRSchedule(config.gamma_min, config.gamma_max)
        self.network = UNet(data_shape[0], config.channels, config.blocks)

    @property
    def levels(self) -> int:
        return LEVELS

    def _scaled(self, x: Tensor) -> Tensor:
        """Pixels in [0, 1] (k / 255) as the centres of 256 bins of [-1, 1]."""
        return (torch.round(x * (LEVELS - 1)) * 2 + 1) / LEVELS - 1

    def _terms(self, x: Tensor, t: Tensor) -> dict[str, Tensor]:
        e = self._scaled(x)
        dims = tuple(range(1, e.dim()))
        gamma_0, gamma_1 = (self.schedule(torch.tensor(v, device=x.device)) for v in (0.0, 1.0))
        # decoder: z_0 drawn from q(z_0 | x); each value v's logit is log N(z_0; alpha_0 e_v, sigma_0^2).
        alpha_0, sigma_0 = torch.sigmoid(-gamma_0).sqrt(), torch.sigmoid(gamma_0).sqrt()
        z_0 = alpha_0 * e + sigma_0 * torch.randn_like(e)
        values = (torch.arange(LEVELS, device=x.device) * 2 + 1) / LEVELS - 1
        logits = -0.5 * ((z_0.unsqueeze(-1) - alpha_0 * values) / sigma_0) ** 2
        index = torch.round((e + 1) * LEVELS / 2 - 0.5).long().clamp(0, LEVELS - 1)
        decoder = -(logits.log_softmax(-1).gather(-1, index.unsqueeze(-1)).squeeze(-1)).sum(dims)
        # prior: KL(q(z_1 | x) || N(0, I)).
        var_1 = torch.sigmoid(gamma_1)
        prior = 0.5 * ((1 - var_1) * e**2 + var_1 - torch.log(var_1) - 1).sum(dims)
        # diffusion: 1/2 gamma' ||eps - eps_hat(z_t)||^2 at the drawn t.
        gamma_t = self.schedule(t)
        shape = (-1,) + (1,) * (e.dim() - 1)
        eps = torch.randn_like(e)
        z_t = torch.sigmoid(-gamma_t).sqrt().view(shape) * e + torch.sigmoid(gamma_t).sqrt().view(shape) * eps
        eps_hat = self.network(z_t, gamma_t).float()
        diffusion = 0.5 * self.schedule.slope * ((eps - eps_hat) ** 2).sum(dims)
        return {"decoder": decoder, "diffusion": diffusion, "prior": prior}

    def _bound(self, terms: dict[str, Tensor]) -> Bound:
        return Bound(terms["decoder"] + terms["diffusion"] + terms["prior"], terms)

    def loss(self, x: Tensor) -> tuple[Tensor, Bound]:
        # Low-discrepancy times: one uniform offset, the batch spread evenly over [0, 1].
        t = (torch.rand(1, device=x.device) + torch.arange(len(x), device=x.device) / len(x)) % 1
        bound = self._bound(self._terms(x, t))
        assert bound.value is not None
        return bound.value.mean(), bound

    def evaluation_bound(self, x: Tensor) -> Bound:
        draws = [self._terms(x, torch.rand(len(x), device=x.device)) for _ in range(self.draws)]
        return self._bound({name: torch.stack([d[name] for d in draws]).mean(0) for name in self.terms})

    def sample(self, n: int, sampler: str = "ancestral", steps: int | None = None) -> Tensor:
        device = next(self.parameters()).device
        steps = steps or self.steps
        z = torch.randn(n, *self.data_shape, device=device)
        times = torch.linspace(1, 0, steps + 1, device=device)
        for t, s in zip(times[:-1], times[1:], strict=True):
            gamma_t, gamma_s = self.schedule(t), self.schedule(s)
            alpha_t, sigma_t = torch.sigmoid(-gamma_t).sqrt(), torch.sigmoid(gamma_t).sqrt()
            alpha_s, sigma_s = torch.sigmoid(-gamma_s).sqrt(), torch.sigmoid(gamma_s).sqrt()
            eps_hat = self.network(z, gamma_t.expand(n)).float()
            if sampler == "ddim":
                x_hat = ((z - sigma_t * eps_hat) / alpha_t).clamp(-1, 1)
                z = alpha_s * x_hat + sigma_s * ((z - alpha_t * x_hat) / sigma_t)
            else:  # ancestral: z_s from p(z_s | z_t) = q(z_s | z_t, x = x_hat)
                c = -torch.expm1(gamma_s - gamma_t)
                mean = alpha_s / alpha_t * (z - c * sigma_t * eps_hat)
                z = mean + (c * sigma_s**2).sqrt() * torch.randn_like(z) if s > 0 else mean
        alpha_0 = torch.sigmoid(-self.schedule(torch.tensor(0.0, device=device))).sqrt()
        bins = torch.round(((z / alpha_0).clamp(-1, 1) + 1) * LEVELS / 2 - 0.5).clamp(0, LEVELS - 1)
        return bins / (LEVELS - 1)


def build(config: DiffusionConfig, context: ModelContext) -> VDM:
    if context.levels not in (LEVELS, None):
        raise ConfigError("diffusion models 8-bit images: leave data.binarize at none")
    if len(context.data_shape) != 3 or context.data_shape[0] not in (1, 3):
        raise ConfigError(f"diffusion needs C x H x W images, got shape {context.data_shape}")
    return VDM(config, context.data_shape)
