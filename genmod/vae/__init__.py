"""The VAE family: a model composed of an encoder, a decoder, a prior and a likelihood.

Its four component kinds are declared through ``register_kinds`` by the family's plugin
(:mod:`genmod.vae.plugin`, an entry point like any third party's), and everything here is also
importable from :mod:`genmod`. Names load on first use (PEP 562), so that importing a module
of the family loads no more of it than that module needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "VAE": "genmod.vae.model",
    "VAEConfig": "genmod.vae.config",
    "LatentConfig": "genmod.vae.config",
    "ComponentContext": "genmod.vae.specs",
    "Decoder": "genmod.vae.components",
    "Encoder": "genmod.vae.components",
    "Likelihood": "genmod.vae.components",
    "Prior": "genmod.vae.components",
    "diagonal_gaussian": "genmod.vae.components",
    "ELBOTerms": "genmod.vae.elbo",
    "kl_term": "genmod.vae.elbo",
    "new_plugin": "genmod.vae.scaffold",  # the plugin scaffold starts from a VAE prior
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'genmod.vae' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from genmod.vae.components import Decoder, Encoder, Likelihood, Prior, diagonal_gaussian
    from genmod.vae.config import LatentConfig, VAEConfig
    from genmod.vae.elbo import ELBOTerms, kl_term
    from genmod.vae.model import VAE
    from genmod.vae.scaffold import new_plugin
    from genmod.vae.specs import ComponentContext
