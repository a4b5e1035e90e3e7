"""The discretized logistic mixture likelihood for 8-bit images (Salimans et al. 2017,
PixelCNN++; the likelihood of NVAE and IAF-VAE on CIFAR-10)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor
from torch.distributions import Distribution

from genmod import ComponentContext, Likelihood

# Pixel values 0..255 sit at the centres of 256 bins of width 2/255 on [-1, 1].
HALF_BIN = 1 / 255


class LogisticMixtureOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mixtures: int = Field(5, ge=1, description="Logistic components per pixel.")


class DiscretizedLogisticMixture(Likelihood):
    """p(x|z) over the 256 values of every channel of every pixel.

    Each pixel is a mixture of ``mixtures`` components; within a component the channels are
    logistics whose means depend linearly on the channels before them (red, then green given
    red, then blue given both), so the colours of a pixel are correlated. The edge values 0 and
    255 take the tails of the logistic, so the probabilities of the 256 values sum to one.
    The decoder emits, per pixel, ``mixtures * (1 + 2C + C(C-1)/2)`` parameters: mixture logits,
    means, log-scales and the coupling coefficients.
    """

    levels = 256

    def __init__(self, data_shape: tuple[int, ...], mixtures: int) -> None:
        super().__init__()
        if len(data_shape) != 3:
            raise ValueError(f"the logistic mixture needs C×H×W images, got shape {data_shape}")
        self.channels, *self.pixels = data_shape
        self.mixtures = mixtures
        self.couplings = self.channels * (self.channels - 1) // 2

    def params_shape(self, data_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.mixtures * (1 + 2 * self.channels + self.couplings), *data_shape[1:])

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Logits (*b, M, H, W), means and log-scales (*b, M, C, H, W), coefficients (*b, M, C(C-1)/2, H, W)."""
        params = params.float()
        m, c = self.mixtures, self.channels
        logits, means, log_scales, coefficients = params.split((m, m * c, m * c, m * self.couplings), dim=-3)
        unflat = lambda t, n: t.unflatten(-3, (m, n))  # noqa: E731
        return (
            logits,
            unflat(means, c),
            unflat(log_scales, c).clamp(min=-7.0),
            unflat(coefficients, self.couplings).tanh(),
        )

    def _coupled_means(self, means: Tensor, coefficients: Tensor, x: Tensor) -> Tensor:
        """Each channel's mean shifted by the coefficients times the channels before it."""
        shifted, pair = [means[..., 0, :, :]], 0
        for channel in range(1, self.channels):
            shift = sum(coefficients[..., pair + j, :, :] * x[..., j, :, :] for j in range(channel))
            shifted.append(means[..., channel, :, :] + shift)
            pair += channel
        return torch.stack(shifted, dim=-3)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        logits, means, log_scales, coefficients = self._split(params)
        # x in [0, 1] (k/255) to the bin centres in [-1, 1], with a mixture axis.
        x = (x.float() * 2 - 1).unsqueeze(-4)
        centred = x - self._coupled_means(means, coefficients, x)
        inverse_scale = torch.exp(-log_scales)
        upper = inverse_scale * (centred + HALF_BIN)
        lower = inverse_scale * (centred - HALF_BIN)
        # log(σ(upper) - σ(lower)) = log σ(upper) + log σ(-lower) + log(1 - e^-(upper - lower)):
        # exact for every bin, where the difference of two sigmoids underflows.
        inner = F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(lower - upper))
        per_channel = torch.where(
            x < -1 + HALF_BIN, F.logsigmoid(upper), torch.where(x > 1 - HALF_BIN, F.logsigmoid(-lower), inner)
        )
        per_pixel = torch.logsumexp(per_channel.sum(-3) + torch.log_softmax(logits, dim=-3), dim=-3)
        return per_pixel.flatten(-2).sum(-1)

    def forward(self, params: Tensor) -> Distribution:
        raise NotImplementedError("the logistic mixture scores images with log_prob(params, x)")

    def mean(self, params: Tensor) -> Tensor:
        """The expected image in [0, 1], channel by channel: each channel's mixture mean given
        the expected channels before it."""
        logits, means, _, coefficients = self._split(params)
        weights = torch.softmax(logits, dim=-3)
        expected = torch.zeros_like(means[..., 0, :, :, :])
        for channel in range(self.channels):
            coupled = self._coupled_means(means, coefficients, expected.unsqueeze(-4))[..., channel, :, :]
            expected[..., channel, :, :] = (weights * coupled).sum(-3).clamp(-1, 1)
        return (expected + 1) / 2


def make_logistic_mixture(
    options: LogisticMixtureOptions, context: ComponentContext
) -> DiscretizedLogisticMixture:
    return DiscretizedLogisticMixture(context.data_shape, options.mixtures)
