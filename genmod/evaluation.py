"""Importance-sampled log-likelihood of a trained model over a whole dataset."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from genmod.elbo import log_mean_exp
from genmod.vae import VAE

# Latents decoded at once: bounds memory (about 0.5 GB for the reference MLP) whatever k is.
MAX_ROWS = 32_768


@dataclass(frozen=True)
class NLLResult:
    """Per-image means over the evaluated images, in nats, with standard errors over images."""

    images: int
    k: int
    nll: float
    nll_se: float
    negative_elbo: float
    negative_elbo_se: float
    seconds: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _mean_and_se(values: Tensor) -> tuple[float, float]:
    values = values.double()
    se = values.std(unbiased=True) / math.sqrt(len(values)) if len(values) > 1 else torch.tensor(0.0)
    return float(values.mean()), float(se)


@torch.inference_mode()
def importance_sampled_nll(model: VAE, images: Tensor, k: int, max_rows: int = MAX_ROWS) -> NLLResult:
    """``-log p(x) ≈ -log (1/k) Σ p(x, z_i)/q(z_i|x)`` for every image, vectorised over samples
    and images in chunks of at most ``max_rows`` latents.

    The negative ELBO is estimated from the same ``k`` samples (the mean log weight).
    """
    model.eval()
    started = time.perf_counter()
    chunk = min(k, max_rows)
    batch = max(1, max_rows // chunk)
    log_px, elbo = [], []
    for x in images.split(batch):
        log_w = model.log_importance_weights(x, k, chunk_size=chunk)
        log_px.append(log_mean_exp(log_w, dim=0))
        elbo.append(log_w.mean(0))
    nll, nll_se = _mean_and_se(-torch.cat(log_px))
    neg_elbo, neg_elbo_se = _mean_and_se(-torch.cat(elbo))
    return NLLResult(len(images), k, nll, nll_se, neg_elbo, neg_elbo_se, time.perf_counter() - started)
