"""Seconds to draw 64 images from a model built from its recipe, in float32 and in bfloat16.

The time depends on the architecture, not on the weights, so the model is freshly built: a
PixelCNN's 784 network passes, a diffusion model's steps. Run by hand, on an otherwise idle
machine:  python benchmarks/sampling_time.py --model pixelcnn
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

import genmod
from genmod.config_loader import resolve_run_config
from genmod.precision import autocast
from genmod.runner import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pixelcnn")
    parser.add_argument("-n", type=int, default=64)
    parser.add_argument(
        "--levels", type=int, default=None, help="pixel levels (2 binarized; default: recipe's)"
    )
    args = parser.parse_args()
    registry = genmod.registry()
    config = resolve_run_config(registry, model=args.model)
    levels = args.levels or (2 if config.data.binarize != "none" else 256)
    model = build_model(config, registry, (1, 28, 28), data_levels=levels).eval()
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    for dtype in (None, torch.bfloat16):
        torch.manual_seed(0)
        start = time.perf_counter()
        with autocast(dtype, torch.device("cpu")):
            model.sample(args.n)
        name = "bf16" if dtype else "fp32"
        print(f"{args.model}: {args.n} samples in {time.perf_counter() - start:.1f} s ({name})")


if __name__ == "__main__":
    main()
