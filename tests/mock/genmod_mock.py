"""A mock model and dataset, like llm's MockModel: the fast tests drive genmod's runner, CLI,
checkpoints and evaluation with them in milliseconds, on 8x8 images made from a fixed seed.

The model is real (a per-pixel Bernoulli with an exact likelihood); the images have structure
(bright rows and columns) so that training visibly lowers the loss.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field
from torch import nn

from genmod import Bound, DatasetSpec, GenerativeModel, ModelConfig, ModelSpec, hookimpl

SIZES = {"train": 512, "test": 128}


def mock_images(root: Path, split: str, download: bool) -> torch.Tensor:
    """Bright rows and columns on a dark ground, 1x8x8, 8-bit: the same on every machine."""
    generator = torch.Generator().manual_seed(0 if split == "train" else 1)
    rows = torch.rand(SIZES[split], 1, 8, 1, generator=generator) < 0.3
    columns = torch.rand(SIZES[split], 1, 1, 8, generator=generator) < 0.3
    return ((rows | columns).to(torch.uint8) * 230 + 10).to(torch.uint8)


class MockConfig(ModelConfig):
    hidden: int = Field(8, ge=1, description="Width of the mixing layer.")


class MockModel(GenerativeModel):
    """Independent Bernoulli pixels whose logits a small layer mixes: exact log p(x)."""

    bound = "NLL"
    terms = ("pixels",)

    def __init__(self, config: MockConfig, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.data_shape = data_shape
        size = int(torch.tensor(data_shape).prod())
        self.logits = nn.Parameter(torch.zeros(size))
        self.mix = nn.Sequential(nn.Linear(size, config.hidden), nn.Tanh(), nn.Linear(config.hidden, size))

    def distribution(self) -> torch.distributions.Distribution:
        logits = (self.logits + self.mix(self.logits.unsqueeze(0)).squeeze(0)).float()
        return torch.distributions.Independent(torch.distributions.Bernoulli(logits=logits), 1)

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        return self.distribution().log_prob(x.flatten(1))

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, Bound]:
        nll = -self.log_likelihood(x)
        return nll.mean(), Bound(nll, {"pixels": nll})

    def sample(self, n: int) -> torch.Tensor:
        return self.distribution().mean.expand(n, -1).reshape(n, *self.data_shape)


@hookimpl
def register_datasets(register):
    register(DatasetSpec(name="mock", build=mock_images, expects="anything", description="8x8 bars."))


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="mock",
            config=MockConfig,
            build=lambda config, context: MockModel(config, context.data_shape),
            recipe=Path(__file__).with_name("mock.yaml"),
            description="A per-pixel Bernoulli for fast tests.",
        )
    )
