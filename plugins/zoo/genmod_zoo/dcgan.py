"""A DCGAN (Radford et al., 2016) for C x H x W images, H and W multiples of 4.

The generator maps noise through a dense layer to ``2c`` maps at a quarter of the image size,
then two stride-2 transposed convolutions with batch norm and ReLU to the image (sigmoid, so
pixels are in [0, 1] like genmod's data); the discriminator mirrors it with stride-2
convolutions and leaky ReLUs. Each has its own Adam optimizer (β1 = 0.5, as in the paper), and
the generator's loss is the non-saturating one. A GAN bounds no likelihood: genmod reports its
two losses, and judges it by sample quality (``train.sample_metrics``, ``genmod eval --metric``).
Built from torch's own modules: the architecture is a few layers, and no library keeps one.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn.functional import binary_cross_entropy_with_logits as bce

from genmod import Bound, ConfigError, GenerativeModel, ModelConfig, ModelContext, OptimizerFactory, Step


class DCGANConfig(ModelConfig):
    noise_dim: int = Field(64, ge=1, description="Size of the generator's input noise.")
    channels: int = Field(
        64, ge=1, description="Feature maps of the first convolution (the next has twice as many)."
    )


class DCGAN(GenerativeModel):
    """A generator and a discriminator of convolutions, each with its own optimizer."""

    bound = None
    terms = ("generator", "discriminator")

    def __init__(self, config: DCGANConfig, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        channels, height, width = data_shape
        c, self.noise_dim, self.data_shape = config.channels, config.noise_dim, data_shape
        self.generator = nn.Sequential(
            nn.Linear(config.noise_dim, 2 * c * (height // 4) * (width // 4)),
            nn.Unflatten(1, (2 * c, height // 4, width // 4)),
            nn.BatchNorm2d(2 * c), nn.ReLU(),
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.BatchNorm2d(c), nn.ReLU(),
            nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Sigmoid(),
        )  # fmt: skip
        self.discriminator = nn.Sequential(
            nn.Conv2d(channels, c, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, 2, 1), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * c * (height // 4) * (width // 4), 1),
        )  # fmt: skip

    def configure_optimizers(self, optimizer: OptimizerFactory) -> dict[str, torch.optim.Optimizer]:
        return {
            "discriminator": optimizer(self.discriminator.parameters(), betas=(0.5, 0.999)),
            "generator": optimizer(self.generator.parameters(), betas=(0.5, 0.999)),
        }

    def _noise(self, n: int, device: torch.device) -> Tensor:
        return torch.randn(n, self.noise_dim, device=device)

    def training_step(self, x: Tensor, step: Step) -> Bound:
        fake = self.generator(self._noise(len(x), x.device))
        real_logits, fake_logits = self.discriminator(x).float(), self.discriminator(fake.detach()).float()
        d_loss = (
            bce(real_logits, torch.ones_like(real_logits), reduction="none")
            + bce(fake_logits, torch.zeros_like(fake_logits), reduction="none")
        ).squeeze(1)
        step.update(d_loss.mean(), "discriminator")
        fooled = self.discriminator(fake).float()
        g_loss = bce(fooled, torch.ones_like(fooled), reduction="none").squeeze(1)  # non-saturating
        step.update(g_loss.mean(), "generator")
        return Bound(None, {"generator": g_loss.detach(), "discriminator": d_loss.detach()})

    def sample(self, n: int) -> Tensor:
        return self.generator(self._noise(n, next(self.parameters()).device)).float()


def build(config: DCGANConfig, context: ModelContext) -> DCGAN:
    shape = context.data_shape
    if len(shape) != 3 or shape[1] % 4 or shape[2] % 4:
        raise ConfigError(f"dcgan needs C x H x W images with H and W multiples of 4, got {shape}")
    return DCGAN(config, shape)
