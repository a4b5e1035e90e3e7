"""Seconds per 1000 test images of a trained run's evaluation at several batch sizes
(``train.eval_batch_size``): ``genmod eval``'s path (eager) and the runner's evaluation after
each epoch (the compiled forward), in the run's precision, in one process.

Why batch size matters on the CPU: a batch's large temporaries (a PixelCNN layer's output for
1000 images is 200 MB) are each served by a fresh mapping of zero-filled pages from the kernel,
every batch, while smaller ones are reused from the allocator's heap. Run by hand, on an
otherwise idle machine:

    python benchmarks/eval_batch.py --run pretrained/pixelcnn --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

import genmod
from genmod.evaluation import evaluate_likelihood
from genmod.precision import autocast_dtype, compile_module
from genmod.training import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("pretrained/pixelcnn"), help="A trained run folder.")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("GENMOD_DATA_DIR", "../shared/data"))
    )
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batches", default="20,50,100,250,1000", help="Comma-separated batch sizes.")
    args = parser.parse_args()

    opened = genmod.open_run(args.run)
    images = genmod.dataset(args.run, root=args.data_dir).test[: args.images]
    precision = opened.config.train.precision
    dtype = autocast_dtype(precision, images.device)
    batches = [int(b) for b in args.batches.split(",")]
    print(
        f"{platform.machine()}, {torch.get_num_threads()} threads; {args.run}, "
        f"{len(images)} test images, {dtype or 'float32'}"
    )

    def seconds(evaluation) -> float:
        evaluation()  # warm: compilation, first-touch
        start = time.perf_counter()
        evaluation()
        return (time.perf_counter() - start) * 1000 / len(images)

    model = opened.model
    eager = {
        b: seconds(lambda b=b: evaluate_likelihood(model, images, 1, precision=precision, batch=b))
        for b in batches
    }
    compile_module(model)
    compiled = {b: seconds(lambda b=b: evaluate(model, images, b, dtype)) for b in batches}
    print(f"{'batch':>6} {'genmod eval (eager)':>20} {'after each epoch (compiled)':>28}")
    for b in batches:
        print(f"{b:>6} {eager[b]:>18.2f} s {compiled[b]:>26.2f} s")


if __name__ == "__main__":
    main()
