"""A convolutional encoder/decoder pair for C×28×28 images."""

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


def _check_shape(data_shape: tuple[int, ...]) -> int:
    if len(data_shape) != 3 or data_shape[1:] != (28, 28):
        raise ValueError(f"the conv encoder/decoder need C×28×28 images, got shape {data_shape}")
    return data_shape[0]


class ConvEncoder(Encoder):
    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, options: ConvOptions) -> None:
        super().__init__()
        c1, c2 = options.channels
        self.net = nn.Sequential(
            nn.Conv2d(_check_shape(data_shape), c1, 4, 2, 1),
            nn.ReLU(),  # 14×14
            nn.Conv2d(c1, c2, 4, 2, 1),
            nn.ReLU(),  # 7×7
            nn.Flatten(),
            nn.Linear(c2 * 49, options.hidden),
            nn.ReLU(),
            nn.Linear(options.hidden, 2 * latent_dim),
        )

    def forward(self, x: Tensor) -> Distribution:
        mean, log_var = self.net(x).chunk(2, dim=-1)
        return diagonal_gaussian(mean, log_var)


class ConvDecoder(Decoder):
    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, options: ConvOptions) -> None:
        super().__init__()
        c1, c2 = options.channels
        self.net = nn.Sequential(
            nn.Linear(latent_dim, options.hidden),
            nn.ReLU(),
            nn.Linear(options.hidden, c2 * 49),
            nn.ReLU(),
            nn.Unflatten(-1, (c2, 7, 7)),
            nn.ConvTranspose2d(c2, c1, 4, 2, 1),
            nn.ReLU(),  # 14×14
            nn.ConvTranspose2d(c1, _check_shape(data_shape), 4, 2, 1),  # 28×28
        )

    def forward(self, z: Tensor) -> Tensor:
        # Convolutions take one batch dim; importance samples add another in front.
        out = self.net(z.reshape(-1, z.shape[-1]))
        return out.reshape(*z.shape[:-1], *out.shape[1:])


def make_encoder(options: ConvOptions, context: ComponentContext) -> ConvEncoder:
    return ConvEncoder(context.data_shape, context.latent_dim, options)


def make_decoder(options: ConvOptions, context: ComponentContext) -> ConvDecoder:
    return ConvDecoder(context.data_shape, context.latent_dim, options)
