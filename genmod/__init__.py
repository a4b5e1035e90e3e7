"""genmod: a plugin-based framework for deep generative models.

Everything a plugin needs is importable from here; other modules are private.
"""

from genmod.components import Decoder, Encoder, Likelihood, Prior, diagonal_gaussian
from genmod.config import ComponentRef, ModelConfig, VAEConfig
from genmod.elbo import ELBOTerms, kl_term, log_mean_exp
from genmod.hookspecs import hookimpl
from genmod.model import Bound, GenerativeModel, TrainingProgress
from genmod.specs import ComponentContext, ComponentSpec, DatasetSpec, ModelContext, ModelSpec, NoOptions
from genmod.vae import VAE

__version__ = "0.2.0"

__all__ = [
    "Bound",
    "GenerativeModel",
    "TrainingProgress",
    "VAE",
    "ComponentContext",
    "ComponentRef",
    "ComponentSpec",
    "DatasetSpec",
    "Decoder",
    "ELBOTerms",
    "Encoder",
    "Likelihood",
    "ModelConfig",
    "ModelContext",
    "ModelSpec",
    "NoOptions",
    "Prior",
    "VAEConfig",
    "diagonal_gaussian",
    "hookimpl",
    "kl_term",
    "log_mean_exp",
    "__version__",
]
