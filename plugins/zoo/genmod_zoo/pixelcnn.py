"""A gated PixelCNN of binary images (van den Oord et al., 2016, "Conditional image generation
with PixelCNN decoders").

``p(x) = prod_i p(x_i | x_<i)`` in raster order, every factor a Bernoulli whose logit a
convolutional network computes from the pixels before it, so ``log p(x)`` is exact and one
network pass gives all 784 factors. The network has two stacks, so that its receptive field
has no blind spot: a vertical stack that sees every row above, and a horizontal stack that
sees the pixels to the left in the current row and takes the vertical stack's features. Each
layer is gated, ``tanh(a) * sigmoid(b)``. The causal masks are made by padding and shifting
rather than by masking kernels: the vertical convolution is ``(k//2 + 1) x k`` with the image
padded above, its output moved down one row before the horizontal stack takes it; the
horizontal convolution is ``1 x (k//2 + 1)`` padded on the left, its first layer given the
image moved right one pixel (the "mask A" layer: a pixel never sees itself).

Channels of one pixel are modelled independently given the pixels before it; for MNIST's one
channel that is the model of the paper. Built from torch's own modules: no library offers a
maintained gated PixelCNN.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from genmod import Bound, ConfigError, GenerativeModel, ModelConfig, ModelContext


class PixelCNNConfig(ModelConfig):
    channels: int = Field(64, ge=1, description="Feature maps of each stack.")
    layers: int = Field(8, ge=1, description="Gated layers after the first (the 'mask A') one.")
    kernel: int = Field(3, ge=3, description="Kernel size of the gated layers (odd).")
    first_kernel: int = Field(7, ge=3, description="Kernel size of the first layer (odd).")
    head: int = Field(256, ge=1, description="Width of the two 1x1 layers that give the logits.")


def _down(v: Tensor) -> Tensor:
    """Move the feature maps down one row, so that row i holds what rows < i gave."""
    return F.pad(v, (0, 0, 1, 0))[:, :, :-1]


def _right(h: Tensor) -> Tensor:
    """Move the feature maps right one column, so that column j holds what columns < j gave."""
    return F.pad(h, (1, 0))[..., :-1]


class GatedLayer(nn.Module):
    """One gated layer of both stacks; ``first`` makes it the layer that sees no current pixel."""

    def __init__(self, c_in: int, c: int, kernel: int, first: bool) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ConfigError(f"pixelcnn kernel sizes must be odd, got {kernel}")
        self.reach, self.first = kernel // 2, first
        self.vertical = nn.Conv2d(c_in, 2 * c, (self.reach + 1, kernel))
        self.vertical_to_horizontal = nn.Conv2d(2 * c, 2 * c, 1)
        self.horizontal = nn.Conv2d(c_in, 2 * c, (1, self.reach + 1))
        self.horizontal_out = nn.Conv2d(c, c, 1)

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        v_pre = self.vertical_features(v)
        return _gate(v_pre), self.horizontal_step(h, _down(v_pre))

    def vertical_features(self, v: Tensor) -> Tensor:
        """The vertical stack's pre-activations: row ``i`` from the input's rows ``<= i``."""
        reach = self.reach
        return self.vertical(F.pad(v, (reach, reach, reach, 0)))

    def horizontal_step(self, h: Tensor, above: Tensor) -> Tensor:
        """The horizontal stack's output, each row from that row alone and ``above``: the
        vertical features of the row above it."""
        h_in = _right(h) if self.first else h
        h_pre = self.horizontal(F.pad(h_in, (self.reach, 0))) + self.vertical_to_horizontal(above)
        h_out = self.horizontal_out(_gate(h_pre))
        return h_out if self.first else h + h_out


def _gate(pre: Tensor) -> Tensor:
    a, b = pre.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class PixelCNN(GenerativeModel):
    """A gated PixelCNN with Bernoulli pixels: exact NLL, sampled one pixel at a time."""

    bound = "NLL"

    def __init__(self, config: PixelCNNConfig, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.data_shape = data_shape
        channels, c = data_shape[0], config.channels
        self.channels = c
        self.layers = nn.ModuleList(
            [GatedLayer(channels, c, config.first_kernel, first=True)]
            + [GatedLayer(c, c, config.kernel, first=False) for _ in range(config.layers)]
        )
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c, config.head, 1), nn.ReLU(), nn.Conv2d(config.head, channels, 1)
        )

    def logits(self, x: Tensor) -> Tensor:
        """The logit of every pixel given the pixels before it in raster order."""
        v = h = 2 * x - 1  # centred inputs; a zero-padded border then reads as "unknown"
        for layer in self.layers:
            v, h = layer(v, h)
        return self.head(h).float()  # float32 likelihoods under bfloat16 autocast

    def log_likelihood(self, x: Tensor) -> Tensor:
        nll = F.binary_cross_entropy_with_logits(self.logits(x), x, reduction="none")
        return -nll.flatten(1).sum(1)

    def loss(self, x: Tensor) -> tuple[Tensor, Bound]:
        nll = -self.log_likelihood(x)
        return nll.mean(), Bound(nll)

    def sample(self, n: int) -> Tensor:
        """Pixel by pixel, ``H * W`` draws. The vertical stack sees only the rows above, which
        are fixed while a row is drawn: it runs once a row, and each pixel's pass is the
        horizontal stack over its own row (:meth:`row_logits`)."""
        device = next(self.parameters()).device
        x = torch.zeros(n, *self.data_shape, device=device)
        height, width = self.data_shape[1:]
        for i in range(height):
            above = self.features_above(x[:, :, :i], width)
            for j in range(width):
                logits = self.row_logits(x[:, :, i : i + 1], above)[:, :, 0, j]
                x[:, :, i, j] = torch.bernoulli(torch.sigmoid(logits))
        return x

    def features_above(self, rows: Tensor, width: int) -> list[Tensor]:
        """Each layer's vertical features of the last of ``rows`` (zeros above the image): what
        the horizontal stack of the row below takes from above."""
        if rows.shape[2] == 0:
            zeros = rows.new_zeros(rows.shape[0], 2 * self.channels, 1, width)
            return [zeros] * len(self.layers)
        v, above = 2 * rows - 1, []
        for layer in self._gated():
            v_pre = layer.vertical_features(v)
            above.append(v_pre[:, :, -1:])
            v = _gate(v_pre)
        return above

    def _gated(self) -> list[GatedLayer]:
        return [cast(GatedLayer, layer) for layer in self.layers]

    def row_logits(self, row: Tensor, above: list[Tensor]) -> Tensor:
        """:meth:`logits` of one row, given :meth:`features_above` of the rows before it."""
        h = 2 * row - 1
        for layer, features in zip(self._gated(), above, strict=True):
            h = layer.horizontal_step(h, features)
        return self.head(h).float()


def build(config: PixelCNNConfig, context: ModelContext) -> PixelCNN:
    if context.levels not in (2, None):
        raise ConfigError("pixelcnn models binary images: set data.binarize=dynamic (or static)")
    if len(context.data_shape) != 3:
        raise ConfigError(f"pixelcnn needs C x H x W images, got shape {context.data_shape}")
    return PixelCNN(config, context.data_shape)
