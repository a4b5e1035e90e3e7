"""The likelihood of a trained model over a whole dataset, as the model offers it.

:func:`evaluate_likelihood` names what it computed: an importance-sampled NLL (a model with
``log_importance_weights``), an exact one (``log_likelihood``), or the model's own evaluation
bound (``evaluation_bound``); a model with none of them has no likelihood to report.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from genmod.config import EVAL_BATCH_SIZE, Compile, Precision
from genmod.data import as_float
from genmod.errors import ConfigError
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

IS_NLL = "IS-NLL"
EXACT_NLL = "exact NLL"


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
    k: int | None
    """Importance samples per image (IS-NLL only)."""
    nll: float
    """The figure :attr:`quantity` names: an estimate of, or an upper bound on, -log p(x)."""
    nll_se: float
    negative_elbo: float | None
    """The -ELBO from the same importance samples (IS-NLL only: the mean log weight of any
    latent-variable model is its ELBO)."""
    negative_elbo_se: float | None
    seconds: float
    precision: str = "fp32"
    """The arithmetic of the layers: fp32 or bf16 (the sums are float32 in both)."""
    compiled: bool = False
    bits_per_dim: float | None = None
    """:attr:`nll` in bits per dimension, for models of discrete 8-bit images."""
    quantity: str = IS_NLL
    """What :attr:`nll` is: ``IS-NLL`` (importance-sampled with :attr:`k`), ``exact NLL``, or
    the name of the model's evaluation bound (its :attr:`~genmod.GenerativeModel.bound`)."""
    report: Path | None = field(default=None, compare=False)
    """Where :func:`genmod.evaluate` wrote the report of a run folder's evaluation (not part of it)."""

    @property
    def label(self) -> str:
        """:attr:`quantity` as reports print it: ``IS-NLL (k=5000)``, ``exact NLL``, ..."""
        return f"{self.quantity} (k={self.k})" if self.k is not None else self.quantity

    @property
    def meaning(self) -> str:
        """What the figures are, in words (``genmod eval`` prints it below them)."""
        if self.quantity == IS_NLL:
            return (
                "IS-NLL estimates -log p(x), tighter as k grows;\n"
                f"the -ELBO is the mean over the same {self.k} samples per image."
            )
        if self.quantity == EXACT_NLL:
            return "the exact -log p(x) the model computes, averaged over the images."
        return f"{self.quantity}: the model's upper bound on -log p(x), averaged over the images."

    def to_dict(self) -> dict[str, float | int | str | None]:
        """The figures and how they were computed, as ``eval.json`` holds them."""
        figures = asdict(self)
        del figures["report"]
        return figures


def log_mean_exp(log_w: Tensor, dim: int = 0) -> Tensor:
    """``log(mean(exp(log_w)))`` along ``dim`` without overflow."""
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


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


def evaluable(model: GenerativeModel) -> bool:
    """Whether the model offers a likelihood or a bound for :func:`evaluate_likelihood`."""
    return any(model.can(m) for m in ("log_importance_weights", "log_likelihood", "evaluation_bound"))


def evaluate_likelihood(
    model: GenerativeModel,
    images: Tensor,
    k: int,
    on_progress: Callable[[int], None] = lambda images_done: None,
    *,
    precision: Precision = "auto",
    compile: Compile = "auto",
    batch: int = EVAL_BATCH_SIZE,
) -> NLLResult:
    """What the model offers over ``images``, in this order: the importance-sampled NLL with
    ``k`` samples (:func:`importance_sampled_nll`), the exact NLL (``log_likelihood``), or its
    evaluation bound (``evaluation_bound``, named by the model's ``bound``). ``k`` is used by
    the first only, ``batch`` (images per batch, divided by the model's ``evaluation_cost``) by
    the other two. ``precision`` and ``compile`` apply to all three (``auto`` compiles from a
    million network passes). A model with none of them is refused in one line."""
    if model.can("log_importance_weights"):
        return importance_sampled_nll(
            model,
            images,
            k,
            MAX_ROWS // model.evaluation_cost,
            on_progress,
            precision=precision,
            compile=compile,
        )
    if not evaluable(model):
        raise ConfigError(no_likelihood(model))
    exact = model.can("log_likelihood")
    model.eval()
    started = time.perf_counter()
    dtype = autocast_dtype(precision, images.device)
    batch = max(1, batch // model.evaluation_cost)
    use_compile = compile_wanted(compile, len(images) * model.evaluation_cost, COMPILE_MIN_SAMPLES)
    score = (lambda x: -model.log_likelihood(x)) if exact else (lambda x: _bound_value(model, x))
    if use_compile:
        score = compiled(score, images.device)
    nlls, done = [], 0
    with torch.inference_mode():
        for x in images.split(batch):
            with autocast(dtype, images.device):
                nll = score(as_float(x))
            nlls.append(nll.float())
            done += len(x)
            on_progress(done)
    nll_mean, nll_se = _mean_and_se(torch.cat(nlls))
    bits = None if model.levels is None else bits_per_dim(nll_mean, math.prod(images.shape[1:]))
    return NLLResult(
        images=len(images),
        k=None,
        nll=nll_mean,
        nll_se=nll_se,
        negative_elbo=None,
        negative_elbo_se=None,
        seconds=time.perf_counter() - started,
        precision=precision_name(dtype),
        compiled=use_compile,
        bits_per_dim=bits,
        quantity=EXACT_NLL if exact else model.bound or "bound",
    )


def _bound_value(model: GenerativeModel, x: Tensor) -> Tensor:
    value = model.evaluation_bound(x).value
    if value is None:
        raise ConfigError(
            f"{type(model).__name__}.evaluation_bound returned no value: it must return a bound"
        )
    return value


def no_likelihood(model: GenerativeModel) -> str:
    """The one line that says a model has nothing for ``genmod eval`` to compute."""
    return (
        f"{type(model).__name__} has no likelihood or bound to evaluate (it implements none of "
        "log_importance_weights, log_likelihood, evaluation_bound): judge its samples with "
        "--metric fid, kid or precision-recall"
    )
