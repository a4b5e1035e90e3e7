"""What a run was computed on, as far as it decides the bits of the result.

Float arithmetic repeats bit for bit only on the same kind of processor, with the same kernels
(SIMD width, native or emulated bfloat16), thread count and torch version. A run records this
fingerprint in ``machine.json`` each time it starts or resumes, so a shipped model says what it
was made on and a test can tell whether bit-for-bit reproduction is to be expected here.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

FILENAME = "machine.json"

# The processor features that choose kernels (x86's vector and matrix extensions, ARM's).
ISA_FLAGS = frozenset(
    {"avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
     "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "sve2", "bf16", "i8mm"}
)  # fmt: skip
# The fields that must match for the same recipe to give the same bits (not, say, memory).
BIT_DECIDING = ("cpu", "isa", "kernels", "threads", "torch")


def _cpuinfo() -> tuple[str, list[str]]:
    """The processor's model name and its kernel-choosing flags, from /proc/cpuinfo on Linux."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return model, []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key in ("flags", "Features"):
            flags |= set(value.split()) & ISA_FLAGS
    return model, sorted(flags)


def fingerprint(device: torch.device | None = None) -> dict[str, Any]:
    """This process's compute fingerprint: ``cpu`` (model name), ``isa`` (the flags above it
    has), ``kernels`` (the SIMD level ATen dispatches to, which ``ATEN_CPU_CAPABILITY`` can
    lower), ``threads``, ``torch``, and the CUDA device's name when ``device`` is one."""
    cpu, isa = _cpuinfo()
    found: dict[str, Any] = {
        "cpu": cpu,
        "isa": isa,
        "kernels": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if device is not None and device.type == "cuda":
        found["gpu"] = torch.cuda.get_device_name(device)
    return found


def differences(recorded: dict[str, Any], here: dict[str, Any], epochs: int | None = None) -> list[str]:
    """What keeps a session recorded as ``recorded`` from repeating bit for bit ``here`` (for
    its first ``epochs`` epochs; all of them by default): the fingerprint's fields that differ,
    the weights' layout, and a thread count that changed during the session."""
    differ = [key for key in (*BIT_DECIDING, "gpu") if recorded.get(key) != here.get(key)]
    # A session recorded before genmod chose layouts computed contiguous.
    if recorded.get("memory_format", "contiguous") != here.get("memory_format", "contiguous"):
        differ.append("memory_format")
    changed = [c for c in recorded.get("threads_changed", []) if epochs is None or c["epoch"] <= epochs]
    return differ + (["threads during the run"] if changed else [])


def record(
    run_dir: Path, from_epoch: int, precision: str, compiled: bool, layout: str, device: torch.device
) -> None:
    """Append this session's fingerprint to ``run_dir/machine.json`` (a list, one entry per start
    or resume, each saying from which epoch on it computed)."""
    sessions = read(run_dir)
    entry = {
        "from_epoch": from_epoch,
        **fingerprint(device),
        "precision": precision,
        "compiled": compiled,
        "memory_format": layout,
        # How OpenMP threads waited (genmod.openmp): it decides speed on shared cores, not bits.
        "openmp": {
            k: os.environ[k]
            for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
            if k in os.environ
        },
    }
    _write(run_dir, [s for s in sessions if s.get("from_epoch", 0) < from_epoch] + [entry])


def note_threads(run_dir: Path, epoch: int, threads: int) -> None:
    """Record in the running session's entry that its thread count changed to ``threads``
    during ``epoch`` (genmod.openmp.ThreadShare): reductions split differently from there on,
    so its bits no longer repeat on a machine that keeps its threads."""
    sessions = read(run_dir)
    if not sessions:
        return
    sessions[-1].setdefault("threads_changed", []).append({"epoch": epoch, "threads": threads})
    _write(run_dir, sessions)


def _write(run_dir: Path, sessions: list[dict[str, Any]]) -> None:
    (run_dir / FILENAME).write_text(json.dumps(sessions, indent=2) + "\n")


def read(run_dir: Path) -> list[dict[str, Any]]:
    """The sessions ``run_dir/machine.json`` records ([] when absent or unreadable)."""
    try:
        sessions = json.loads((run_dir / FILENAME).read_text())
    except (OSError, ValueError):
        return []
    return [s for s in sessions if isinstance(s, dict)] if isinstance(sessions, list) else []


def made_on(run_dir: Path) -> dict[str, Any] | None:
    """The fingerprint of the session that computed a run's first epoch, if recorded."""
    return next((s for s in read(run_dir) if s.get("from_epoch") == 1), None)
