"""A convolutional encoder/decoder pair for C×H×W images: one stride-2 (transposed) convolution
per entry of ``channels``, so H and W must be multiples of 2 ** len(channels) (two layers for
MNIST's 28×28, three for CIFAR's 32×32 or 64×64)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from torch import Tensor, nn
from torch.distributions import Distribution

from genmod import ComponentContext, Decoder, Encoder, diagonal_gaussian


class ConvOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channels: list[PositiveInt] = Field(
        [32, 64],
        min_length=1,
        description="Channels of each stride-2 conv layer, first to last; each halves H and W.",
    )
    hidden: int = Field(256, ge=1, description="Width of the fully connected layer.")


def _check_shape(data_shape: tuple[int, ...], layers: int) -> tuple[int, int, int]:
    """Channels, and height and width after ``layers`` stride-2 layers."""
    scale = 2**layers
    if len(data_shape) != 3 or data_shape[1] % scale or data_shape[2] % scale:
        raise ValueError(
            f"{layers} conv layers need C×H×W images with H and W multiples of {scale}, got shape "
            f"{data_shape}; give model.encoder and model.decoder fewer channels entries"
        )
    channels, height, width = data_shape
    return channels, height // scale, width // scale


def _halving(widths: list[int], transposed: bool) -> list[nn.Module]:
    """Stride-2 4×4 layers from widths[0] to widths[-1], each halving (or doubling) H and W."""
    conv = nn.ConvTranspose2d if transposed else nn.Conv2d
    layers: list[nn.Module] = []
    for before, after in zip(widths, widths[1:], strict=False):
        layers += [conv(before, after, 4, 2, 1), nn.ReLU()]
    return layers


class ConvEncoder(Encoder):
    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, options: ConvOptions) -> None:
        super().__init__()
        channels, height, width = _check_shape(data_shape, len(options.channels))
        self.net = nn.Sequential(
            *_halving([channels, *options.channels], transposed=False),
            nn.Flatten(),
            nn.Linear(options.channels[-1] * height * width, options.hidden),
            nn.ReLU(),
            nn.Linear(options.hidden, 2 * latent_dim),
        )

    def forward(self, x: Tensor) -> Distribution:
        mean, log_var = self.net(x).chunk(2, dim=-1)
        return diagonal_gaussian(mean, log_var)


class ConvDecoder(Decoder):
    def __init__(self, params_shape: tuple[int, ...], latent_dim: int, options: ConvOptions) -> None:
        super().__init__()
        channels, height, width = _check_shape(params_shape, len(options.channels))
        widths = [*reversed(options.channels), channels]
        # The last layer has no ReLU after it: its outputs are the likelihood's parameters.
        self.net = nn.Sequential(
            nn.Linear(latent_dim, options.hidden),
            nn.ReLU(),
            nn.Linear(options.hidden, widths[0] * height * width),
            nn.ReLU(),
            nn.Unflatten(-1, (widths[0], height, width)),
            *_halving(widths, transposed=True)[:-1],
        )

    def forward(self, z: Tensor) -> Tensor:
        # Convolutions take one batch dim; importance samples add another in front.
        out = self.net(z.reshape(-1, z.shape[-1]))
        return out.reshape(*z.shape[:-1], *out.shape[1:])


def make_encoder(options: ConvOptions, context: ComponentContext) -> ConvEncoder:
    return ConvEncoder(context.data_shape, context.latent_dim, options)


def make_decoder(options: ConvOptions, context: ComponentContext) -> ConvDecoder:
    return ConvDecoder(context.params_shape, context.latent_dim, options)
