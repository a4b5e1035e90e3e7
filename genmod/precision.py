"""Numeric precision and compilation: what ``train.precision``, ``train.compile`` and
``genmod eval --precision/--compile`` switch on.

bfloat16 autocast and ``torch.compile`` each make the reference training step and ``genmod
eval`` faster on CPUs with native bfloat16 (the figures, per CPU, are in
``benchmarks/README.md``, measured by ``benchmarks/epoch_time.py`` and ``eval_time.py``).
bfloat16 (or float16) applies to the layers (matrix
multiplies and convolutions, through :func:`torch.autocast`); distributions, losses and
log-sum-exps stay in float32. float16's narrow range needs a gradient scaler in training
(:func:`grad_scaler`); bfloat16 has float32's range and needs none.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import torch

from genmod.config import Compile, MemoryFormat, Precision
from genmod.model import TrainingProgress

# Compiling the reference model takes seconds (less with inductor's on-disk cache) and saves
# a little on every training step, so it pays for itself after a few thousand steps
# (benchmarks/README.md).
COMPILE_MIN_STEPS = 5_000
# ... and for evaluation, after about a million importance samples.
COMPILE_MIN_SAMPLES = 1_000_000

_F = TypeVar("_F", bound=Callable[..., object])


# oneDNN's instruction sets that have no bfloat16 arithmetic (ONEDNN_MAX_CPU_ISA's values).
_ISAS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"}


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively (and so faster than float32).

    On the CPU: the processor has the instructions and oneDNN may use them (a
    ``ONEDNN_MAX_CPU_ISA`` without bfloat16, e.g. ``AVX2``, makes it emulate them slowly;
    ``benchmarks/epoch_time.py`` uses it to measure a float32-only CPU)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        capped = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in _ISAS_WITHOUT_BF16
        return not capped and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


# What each precision setting runs the layers in (None: float32, no autocast).
DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The dtype layers run in (None: float32). ``auto`` is bf16 where the device has native
    bfloat16 arithmetic, else fp32."""
    if precision == "auto":
        precision = "bf16" if native_bf16(device) else "fp32"
    return DTYPES[precision]


LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def memory_format(
    setting: MemoryFormat, model: torch.nn.Module, dtype: torch.dtype | None, device: torch.device
) -> str:
    """The layout ``train.memory_format`` gives ``model``'s weights. ``auto`` is channels-last for
    a model with convolution weights that computes in float32 on the CPU, where no conv model
    measured ran slower in it; in bfloat16 some did, so they stay contiguous (the figures:
    ``benchmarks/README.md``, ``conv_layout.py``)."""
    if setting != "auto":
        return setting
    convolutional = any(p.dim() == 4 for p in model.parameters())
    return "channels_last" if convolutional and dtype is None and device.type == "cpu" else "contiguous"


def precision_name(dtype: torch.dtype | None) -> str:
    """How reports name the layers' arithmetic: ``fp32`` (None), ``bf16`` or ``fp16``."""
    return next(name for name, value in DTYPES.items() if value == dtype)


def grad_scaler(dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for float16 layers, whose gradients would otherwise underflow; for other
    dtypes a disabled scaler, whose calls pass straight through to the optimizer."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def autocast(dtype: torch.dtype | None, device: torch.device) -> AbstractContextManager[None]:
    """Layers in ``dtype`` inside the block (a no-op for None)."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def compile_wanted(setting: Compile, work: int, threshold: int) -> bool:
    """True or False as said; ``auto`` compiles when ``work`` (steps or samples) reaches
    ``threshold``, where compiling pays for itself."""
    return work >= threshold if setting == "auto" else setting


@functools.cache
def _before_first_compilation() -> None:
    """Mark what compiled graphs must call instead of tracing: the warm-up ramp, whose value
    changes every step; and keep kernels apart by instruction set. Done at the first
    compilation, not at import: ``torch.compiler.disable`` imports torch._dynamo, which would
    add a second to every ``genmod list``."""
    TrainingProgress._ramp = torch.compiler.disable(TrainingProgress._ramp)  # type: ignore[method-assign]
    separate_kernel_caches()
    # Building the CPU kernels warns "No CUDA runtime is found" wherever a CUDA toolkit lies
    # on disk without a GPU: nothing is wrong, and nothing for a user to do.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def kernel_cache_dir() -> str:
    """Where inductor keeps this process's compiled kernels: its per-user folder, one for each
    vector instruction set ATen dispatches to (``ATEN_CPU_CAPABILITY`` can lower it).

    Inductor's on-disk caches do not keep kernels built under one capability apart from those
    built under another: on one machine, a run with ``ATEN_CPU_CAPABILITY=avx2`` after a native
    one (``benchmarks/epoch_time.py --isa avx2``) trained the conv VAE to a NaN loss at its first
    step, and the reverse order corrupted the heap; with a folder each, both were right."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    return f"{default_cache_dir()}-{torch.backends.cpu.get_cpu_capability().lower()}"


def separate_kernel_caches() -> None:
    """Point inductor at :func:`kernel_cache_dir`, unless the user chose a folder; call it
    before the process's first compilation."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # Loading inductor sets TORCHINDUCTOR_CACHE_DIR to its default: that is not a choice.
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen is None or os.path.abspath(chosen) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = kernel_cache_dir()


def _inductor_options(device: torch.device) -> dict[str, str | int | bool | Callable[..., Any]]:
    """Eager random numbers, so that a compiled run draws exactly the samples an eager one
    draws (same seed, same noise) and resume stays bit-exact. On the CPU, graphs are also
    called from generated C++ rather than Python: the same kernels, so the same numbers, and
    a measurable part of the reference training step (benchmarks/README.md), whose kernels are small
    enough for the Python calls between them to show."""
    return {"fallback_random": True, "cpp_wrapper": device.type == "cpu"}


def compiled(function: _F, device: torch.device) -> _F:
    """``torch.compile`` of ``function``, which runs on ``device``, with genmod's options."""
    _before_first_compilation()
    return torch.compile(function, options=_inductor_options(device))  # type: ignore[return-value]


def compile_module(module: torch.nn.Module) -> None:
    """Compile ``module``'s forward in place: its class, attributes and state-dict keys stay."""
    _before_first_compilation()
    device = next(module.parameters(), torch.empty(0)).device
    module.compile(options=_inductor_options(device))
