"""The import path of plugin API 0.2 for the ELBO helpers, which live in :mod:`genmod.vae.elbo`
since 0.3 (``log_mean_exp`` in :mod:`genmod.evaluation`; import them from :mod:`genmod`)."""

from genmod.evaluation import log_mean_exp
from genmod.vae.elbo import ELBOTerms, kl_term

__all__ = ["ELBOTerms", "kl_term", "log_mean_exp"]
