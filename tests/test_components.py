import pytest
import torch
from torch import nn

from genmod import VAE, Decoder, Encoder, Likelihood, Prior, VAEConfig
from genmod.specs import ModelContext


def test_each_interface_names_the_missing_method():
    for base, method in (
        (Encoder, "forward"),
        (Decoder, "forward"),
        (Likelihood, "forward"),
        (Prior, "distribution"),
    ):
        incomplete = type(f"Incomplete{base.__name__}", (base,), {})
        with pytest.raises(
            TypeError, match=rf"Incomplete{base.__name__}.*genmod\.{base.__name__}.*{method}\(\)"
        ):
            incomplete()


def test_implementing_the_method_is_enough():
    class Identity(Decoder):
        def forward(self, z):
            return z

    assert torch.equal(Identity()(torch.ones(2)), torch.ones(2))


def test_vae_refuses_parts_of_the_wrong_kind(registry):
    context = ModelContext(
        data_shape=(1, 28, 28), build_component=registry.build_component, kinds=registry.component_contexts()
    )
    config = VAEConfig(name="x", latent_dim=2)
    prior, likelihood = context.prior(config, None), context.likelihood(config)
    with pytest.raises(TypeError, match="expects a genmod.Encoder, got Linear"):
        VAE(nn.Linear(2, 2), nn.Linear(2, 2), prior, likelihood)
