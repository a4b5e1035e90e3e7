"""Glow (Kingma & Dhariwal, 2018): a multi-scale normalizing flow of dequantized 8-bit images.

Each level is ``blocks`` Glow steps (activation normalization, an invertible 1x1 convolution,
an affine coupling) followed by a squeeze; after each level but the last, half of the
channels leave as latents (the multi-scale architecture of RealNVP). The layers are
normflows' (``GlowBlock``, ``Squeeze``, ``Merge``, ``MultiscaleFlow``), the library chosen for
its maintained multi-scale Glow; zuko's flows are for vectors, not images.

A flow is a density over continuous values, so the 8-bit pixels are dequantized: ``v = (k +
u) / 256`` with ``u`` uniform. ``E_u[-log p(v)] + D log 256`` bounds ``-log P(k)`` from above
(Jensen), which is what the literature reports in bits per dimension for RealNVP, Glow and
FFJORD; this model names it the ``dequantized NLL``. With ``logit`` set to ``a`` (RealNVP's and
MAF's preprocessing), the flow models ``y = logit(a + (1 - 2a) v)`` and ``p(v)`` takes the fixed
map's log-determinant: MNIST's many black pixels then span a wide interval of ``y`` instead of a
sliver at the edge of ``[0, 1]``; without it the flow models ``y = v - 1/2``. Training draws ``u`` once; ``genmod
eval`` averages ``evaluation_draws`` draws per image. The flow computes in float32 whatever
``train.precision`` says: its log-determinants and inverses are too sensitive for bfloat16.
"""

from __future__ import annotations

import math
import warnings
from contextlib import AbstractContextManager

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from genmod import Bound, ConfigError, GenerativeModel, ModelConfig, ModelContext

LEVELS = 256


class GlowConfig(ModelConfig):
    levels: int = Field(
        2, ge=1, description="Scales (each halves height and width; H, W multiples of 2**levels)."
    )
    blocks: int = Field(8, ge=1, description="Glow steps per scale.")
    hidden: int = Field(128, ge=1, description="Feature maps of each coupling network.")
    evaluation_draws: int = Field(4, ge=1, description="Dequantization draws per image in genmod eval.")
    logit: float | None = Field(
        1e-6,
        gt=0,
        lt=0.5,
        description="Model logit(a + (1 - 2a) v) of the pixels v in [0, 1), a = this; null: v - 1/2.",
    )


class SampleOptions(BaseModel):
    """``genmod sample --option KEY=VALUE``."""

    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(
        1.0,
        gt=0,
        description="Scale of the latents' standard deviation: 1 is the model's distribution; the "
        "Glow paper's samples use 0.7, where the inverse of a contracting flow diverges less.",
    )


class Glow(GenerativeModel):
    """A multi-scale Glow: its dequantized NLL in nats and bits per dimension."""

    bound = "dequantized NLL"
    sample_options = SampleOptions

    def __init__(self, config: GlowConfig, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        import normflows as nf

        channels, height, width = data_shape
        levels = config.levels
        self.data_shape, self.draws, self.logit = data_shape, config.evaluation_draws, config.logit
        self.evaluation_cost = config.evaluation_draws
        q0, flows, merges = [], [], []
        for i in range(levels):
            # Level 0 is the coarsest: its flows run last on the way to the latents.
            c = channels * 2 ** (levels + 1 - i)
            flows.append(
                [self._block(nf, c, config.hidden) for _ in range(config.blocks)] + [nf.flows.Squeeze()]
            )
            if i > 0:
                merges.append(nf.flows.Merge())
                shape = (
                    channels * 2 ** (levels - i),
                    height // 2 ** (levels - i),
                    width // 2 ** (levels - i),
                )
            else:
                shape = (channels * 2 ** (levels + 1), height // 2**levels, width // 2**levels)
            q0.append(nf.distributions.DiagGaussian(shape))
        self.flow = nf.MultiscaleFlow(q0, flows, merges, class_cond=False)

    @staticmethod
    def _block(nf, c: int, hidden: int):  # noqa: ANN001, ANN205 - normflows is untyped
        with warnings.catch_warnings():
            # normflows' invertible 1x1 convolution calls torch.lu, deprecated but correct:
            # not the user's to act on.
            warnings.filterwarnings("ignore", message="torch.lu is deprecated", category=UserWarning)
            return nf.flows.GlowBlock(c, hidden, split_mode="channel", scale=True)

    @property
    def levels(self) -> int:
        return LEVELS

    def _float32(self, x: Tensor) -> AbstractContextManager[None]:
        return torch.autocast(x.device.type, enabled=False)

    def _nll(self, x: Tensor) -> Tensor:
        k = torch.round(x.float() * (LEVELS - 1))
        v = (k + torch.rand_like(k)) / LEVELS
        dims = math.prod(self.data_shape)
        with self._float32(x):
            if self.logit is None:
                return -self.flow.log_prob(v - 0.5, None) + dims * math.log(LEVELS)
            a = self.logit
            s = a + (1 - 2 * a) * v
            # log |dy/dv| of y = logit(s): log(1 - 2a) - log s - log(1 - s), per pixel.
            log_det = (math.log(1 - 2 * a) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
            nll: Tensor = -(self.flow.log_prob(torch.logit(s), None) + log_det) + dims * math.log(LEVELS)
        return nll

    def loss(self, x: Tensor) -> tuple[Tensor, Bound]:
        nll = self._nll(x)
        return nll.mean(), Bound(nll)

    def evaluation_bound(self, x: Tensor) -> Bound:
        return Bound(torch.stack([self._nll(x) for _ in range(self.draws)]).mean(0))

    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        device = next(self.parameters()).device
        with torch.autocast(device.type, enabled=False):
            y, _ = self.flow.sample(n, temperature=None if temperature == 1 else temperature)
        v = y + 0.5 if self.logit is None else (torch.sigmoid(y) - self.logit) / (1 - 2 * self.logit)
        return (torch.floor(v * LEVELS).clamp(0, LEVELS - 1) / (LEVELS - 1)).float()


def build(config: GlowConfig, context: ModelContext) -> Glow:
    shape = context.data_shape
    if context.levels not in (LEVELS, None):
        raise ConfigError("glow models 8-bit images: leave data.binarize at none")
    side = 2**config.levels
    if len(shape) != 3 or shape[1] % side or shape[2] % side:
        raise ConfigError(
            f"glow with {config.levels} levels needs C x H x W images, H and W multiples of {side}, got {shape}"
        )
    return Glow(config, shape)
