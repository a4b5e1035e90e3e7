"""A convolutional encoder/decoder pair for C×H×W images, H and W multiples of 4 (MNIST's
28×28, CIFAR's 32×32)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from torch import Tensor, nn
from torch.distributions import Distribution

from genmod import ComponentContext, Decoder, Encoder, diagonal_gaussian


class ConvOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channels: list[PositiveInt] = Field(
        [32, 64], min_length=2, max_length=2, description="Channels of the two conv layers."
    )
    hidden: int = Field(256, ge=1, description="Width of the fully connected layer.")


def _check_shape(data_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Channels, and height and width after the two stride-2 layers."""
    if len(data_shape) != 3 or data_shape[1] % 4 or data_shape[2] % 4:
        raise ValueError(
            f"the conv encoder/decoder need C×H×W images with H and W multiples of 4, got shape {data_shape}"
        )
    channels, height, width = data_shape
    return channels, height // 4, width // 4


class ConvEncoder(Encoder):
    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, options: ConvOptions) -> None:
        super().__init__()
        c1, c2 = options.channels
        channels, height, width = _check_shape(data_shape)
        self.net = nn.Sequential(
            nn.Conv2d(channels, c1, 4, 2, 1),
            nn.ReLU(),  # H/2 × W/2
            nn.Conv2d(c1, c2, 4, 2, 1),
            nn.ReLU(),  # H/4 × W/4
            nn.Flatten(),
            nn.Linear(c2 * height * width, options.hidden),
            nn.ReLU(),
            nn.Linear(options.hidden, 2 * latent_dim),
        )

    def forward(self, x: Tensor) -> Distribution:
        mean, log_var = self.net(x).chunk(2, dim=-1)
        return diagonal_gaussian(mean, log_var)


class ConvDecoder(Decoder):
    def __init__(self, params_shape: tuple[int, ...], latent_dim: int, options: ConvOptions) -> None:
        super().__init__()
        c1, c2 = options.channels
        channels, height, width = _check_shape(params_shape)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, options.hidden),
            nn.ReLU(),
            nn.Linear(options.hidden, c2 * height * width),
            nn.ReLU(),
            nn.Unflatten(-1, (c2, height, width)),
            nn.ConvTranspose2d(c2, c1, 4, 2, 1),
            nn.ReLU(),  # H/2 × W/2
            nn.ConvTranspose2d(c1, channels, 4, 2, 1),  # the likelihood's parameters per pixel
        )

    def forward(self, z: Tensor) -> Tensor:
        # Convolutions take one batch dim; importance samples add another in front.
        out = self.net(z.reshape(-1, z.shape[-1]))
        return out.reshape(*z.shape[:-1], *out.shape[1:])


def make_encoder(options: ConvOptions, context: ComponentContext) -> ConvEncoder:
    return ConvEncoder(context.data_shape, context.latent_dim, options)


def make_decoder(options: ConvOptions, context: ComponentContext) -> ConvDecoder:
    return ConvDecoder(context.params_shape, context.latent_dim, options)
