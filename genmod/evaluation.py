"""Importance-sampled log-likelihood of a trained model over a whole dataset."""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from genmod.config import Compile, Precision
from genmod.data import as_float
from genmod.elbo import log_mean_exp
from genmod.metrics import bits_per_dim
from genmod.model import GenerativeModel
from genmod.precision import (
    COMPILE_MIN_SAMPLES,
    autocast,
    autocast_dtype,
    compile_wanted,
    compiled,
    precision_name,
)

# Latents decoded at once: bounds the evaluator's working memory (about 0.3 GB for the
# reference MLP) whatever k and the number of images.
MAX_ROWS = 32_768


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, where the C library has one.

    glibc keeps the freed blocks of the evaluator's large temporaries instead of returning
    them to the system, so over thousands of batches the process crept up by about 1 MB a
    batch (4.2 GB resident after the full MNIST test set at k=5000); trimming after each
    batch keeps it flat.
    """
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return None


_malloc_trim = _find_malloc_trim()


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
    precision: str = "fp32"
    """The arithmetic of the layers: fp32 or bf16 (the sums are float32 in both)."""
    compiled: bool = False
    bits_per_dim: float | None = None
    """The IS-NLL in bits per dimension, for models of discrete 8-bit images."""

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _mean_and_se(values: Tensor) -> tuple[float, float]:
    values = values.double()
    se = values.std(unbiased=True) / math.sqrt(len(values)) if len(values) > 1 else torch.tensor(0.0)
    return float(values.mean()), float(se)


@torch.inference_mode()
def importance_sampled_nll(
    model: GenerativeModel,
    images: Tensor,
    k: int,
    max_rows: int = MAX_ROWS,
    on_progress: Callable[[int], None] = lambda images_done: None,
    *,
    precision: Precision = "auto",
    compile: Compile = "auto",
) -> NLLResult:
    """``-log p(x) ≈ -log (1/k) Σ p(x, z_i)/q(z_i|x)`` for every image, vectorised over samples
    and images in chunks of at most ``max_rows`` latents; ``on_progress(images_done)`` after
    each batch of images.

    The negative ELBO is estimated from the same ``k`` samples (the mean log weight).
    ``precision`` and ``compile`` are ``train.precision`` and ``train.compile``'s choices for
    the weights' computation (``auto`` compiles from a million samples on); the random draws
    are the same in every mode, and the log-mean-exp is float32.
    """
    model.eval()
    started = time.perf_counter()
    dtype = autocast_dtype(precision, images.device)
    use_compile = compile_wanted(compile, len(images) * k, COMPILE_MIN_SAMPLES)
    weights = (
        compiled(model.log_importance_weights, images.device) if use_compile else model.log_importance_weights
    )
    chunk = min(k, max_rows)
    batch = max(1, max_rows // chunk)
    log_px, elbo = [], []
    for x in images.split(batch):
        with autocast(dtype, images.device):
            log_w = weights(as_float(x), k, chunk_size=chunk).float()
        log_px.append(log_mean_exp(log_w, dim=0))
        elbo.append(log_w.mean(0))
        del log_w
        if _malloc_trim is not None:
            _malloc_trim(0)
        on_progress(len(log_px) * batch)
    nll, nll_se = _mean_and_se(-torch.cat(log_px))
    neg_elbo, neg_elbo_se = _mean_and_se(-torch.cat(elbo))
    seconds = time.perf_counter() - started
    bits = None if model.levels is None else bits_per_dim(nll, math.prod(images.shape[1:]))
    return NLLResult(
        len(images), k, nll, nll_se, neg_elbo, neg_elbo_se, seconds, precision_name(dtype), use_compile, bits
    )
