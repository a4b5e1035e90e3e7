"""genmod's reference plugin: the seed notebook's fully connected VAE for 28x28 images.

It uses nothing but genmod's public API, exactly as a third-party plugin would.
Encoder 784-400-400-(mu, log sigma^2) with 20 latents and ReLU; decoder 20-400-400-784
producing logits; the prior and likelihood are chosen by name in the config.
"""

from __future__ import annotations

import math
from importlib.resources import files
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from torch import Tensor, nn
from torch.distributions import Distribution

from genmod import (
    VAE,
    ComponentContext,
    ComponentSpec,
    Decoder,
    Encoder,
    ModelContext,
    ModelSpec,
    VAEConfig,
    diagonal_gaussian,
    hookimpl,
)

RECIPE = Path(str(files(__name__) / "mlp-vae.yaml"))


Activation = Literal["relu", "tanh"]
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


def _mlp(sizes: list[int], activation: Activation = "relu") -> nn.Sequential:
    """Linear layers with the activation between and after them."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes, sizes[1:], strict=False):
        layers += [nn.Linear(n_in, n_out), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


class MLPEncoder(Encoder):
    def __init__(
        self,
        data_shape: tuple[int, ...],
        hidden_dims: list[int],
        latent_dim: int,
        activation: Activation = "relu",
    ) -> None:
        super().__init__()
        self.body = _mlp([math.prod(data_shape), *hidden_dims], activation)
        self.head = nn.Linear(hidden_dims[-1], 2 * latent_dim)

    def forward(self, x: Tensor) -> Distribution:
        mean, log_var = self.head(self.body(x.flatten(1))).chunk(2, dim=-1)
        return diagonal_gaussian(mean, log_var)


class MLPDecoder(Decoder):
    def __init__(
        self,
        latent_dim: int,
        hidden_dims: list[int],
        params_shape: tuple[int, ...],
        activation: Activation = "relu",
    ) -> None:
        super().__init__()
        self.params_shape = params_shape
        self.body = _mlp([latent_dim, *hidden_dims], activation)
        self.head = nn.Linear(hidden_dims[-1], math.prod(params_shape))

    def forward(self, z: Tensor) -> Tensor:
        return self.head(self.body(z)).unflatten(-1, self.params_shape)


class MLPOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hidden_dims: list[PositiveInt] = Field(
        [400, 400], min_length=1, description="Widths of the hidden layers."
    )
    activation: Activation = Field("relu", description="relu or tanh (the IWAE paper's).")


class MLPVAEConfig(VAEConfig):
    hidden_dims: list[PositiveInt] = Field(
        [400, 400], min_length=1, description="Hidden layer widths of the encoder (mirrored in the decoder)."
    )
    activation: Activation = Field("relu", description="relu or tanh (the IWAE paper's).")


def build_mlp_vae(config: MLPVAEConfig, context: ModelContext) -> VAE:
    encoder = MLPEncoder(context.data_shape, config.hidden_dims, config.latent_dim, config.activation)
    likelihood = context.likelihood(config)
    params = likelihood.params_shape(context.data_shape)
    decoder = MLPDecoder(config.latent_dim, config.hidden_dims, params, config.activation)
    return VAE(encoder, decoder, context.prior(config, encoder), likelihood, **config.vae_options())


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="mlp-vae",
            config=MLPVAEConfig,
            build=build_mlp_vae,
            recipe=RECIPE,
            description="The seed notebook's MLP VAE (784-400-400-20) with a correct ELBO.",
        )
    )


@hookimpl
def register_encoders(register):
    def build(options: MLPOptions, context: ComponentContext) -> MLPEncoder:
        return MLPEncoder(context.data_shape, options.hidden_dims, context.latent_dim, options.activation)

    register(
        ComponentSpec(
            name="mlp", build=build, options=MLPOptions, description="ReLU MLP to a diagonal Gaussian q(z|x)."
        )
    )


@hookimpl
def register_decoders(register):
    def build(options: MLPOptions, context: ComponentContext) -> MLPDecoder:
        return MLPDecoder(context.latent_dim, options.hidden_dims, context.params_shape, options.activation)

    register(
        ComponentSpec(
            name="mlp",
            build=build,
            options=MLPOptions,
            description="ReLU MLP from z to per-pixel parameters.",
        )
    )
