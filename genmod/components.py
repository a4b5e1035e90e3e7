"""The import path of plugin API 0.2 for the VAE family's four interfaces, which live in
:mod:`genmod.vae.components` since 0.3 (import them from :mod:`genmod`)."""

from genmod.vae.components import Decoder, Encoder, Likelihood, Prior, diagonal_gaussian

__all__ = ["Decoder", "Encoder", "Likelihood", "Prior", "diagonal_gaussian"]
