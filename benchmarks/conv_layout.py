"""Seconds per training epoch of genmod's convolutional models with their weights in PyTorch's
default (contiguous, NCHW) layout and in channels-last (NHWC), interleaved in one process,
median of ``--repeats``: what ``train.memory_format: auto`` chooses from (#26 asks for
channels-last on CPUs without bfloat16).

Each model is built by genmod's runner from its registered defaults with ``data.limit`` images,
and ``genmod.training.train_epoch`` is timed (the training steps alone, no evaluation), eager
and compiled. ``--isa avx2`` measures a float32-only CPU as ``epoch_time.py`` does.
Run by hand, on an otherwise idle machine:

    python benchmarks/conv_layout.py --data-dir ../shared/data --isa avx2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from epoch_time import as_float32_only_cpu
from rich.console import Console

from genmod.config_loader import resolve_run_config
from genmod.distributed import Topology
from genmod.plugins import load_registry
from genmod.precision import LAYOUTS
from genmod.progress import RunReporter
from genmod.runner import Run
from genmod.training import train_epoch


def epoch_runner(model: str, layout: str, compiled: bool, args: argparse.Namespace) -> Callable[[], float]:
    registry = load_registry()
    overrides = [
        f"data.root={args.data_dir}",
        f"data.limit={args.images}",
        "train.device=cpu",
        f"train.precision={args.precision}",
        f"train.compile={str(compiled).lower()}",
        f"train.memory_format={layout}",
    ]
    config = resolve_run_config(registry, model=model, overrides=overrides)
    out = Path(tempfile.mkdtemp(prefix="genmod-conv-layout-")) / "run"
    run = Run(config, registry, Topology(), torch.device("cpu"), out, RunReporter(Console(quiet=True)))
    generator = torch.Generator().manual_seed(0)

    def epoch() -> float:
        start = time.perf_counter()
        train_epoch(
            run.trained,
            run.optimizers,
            run.data.train,
            config.train.batch_size,
            generator,
            1,
            rules=run.rules,
            scaler=run.scaler,
            binarize=run.data.dynamic_binarization,
            dtype=run.dtype,
        )
        return time.perf_counter() - start

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("GENMOD_DATA_DIR", "../shared/data"))
    )
    parser.add_argument("--models", default="conv-vae,dcgan,pixelcnn")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--isa", choices=("native", "avx2"), default="native")
    args = parser.parse_args()
    if args.isa == "avx2":
        as_float32_only_cpu()
    print(
        f"kernels: ATen {torch.backends.cpu.get_cpu_capability()}; {torch.get_num_threads()} threads; "
        f"{args.precision}, {args.images} images an epoch, median of {args.repeats}"
    )
    for model in args.models.split(","):
        for compiled in (False, True):
            runs = {layout: epoch_runner(model, layout, compiled, args) for layout in LAYOUTS}
            for epoch in runs.values():  # warm-up: compilation, caches
                epoch()
            times: dict[str, list[float]] = {layout: [] for layout in runs}
            for _ in range(args.repeats):
                for layout, epoch in runs.items():
                    times[layout].append(epoch())
            contiguous, last = (statistics.median(times[layout]) for layout in LAYOUTS)
            print(
                f"{model:>10} {'compiled' if compiled else 'eager':>8}: contiguous {contiguous:6.2f} s, "
                f"channels-last {last:6.2f} s, contiguous / channels-last = {contiguous / last:.2f}x"
            )


if __name__ == "__main__":
    main()
