"""Importance-sampled NLL throughput: genmod's vectorised evaluator vs a per-image loop.

The loop is the structure of Pythae's ``get_nll``: for each image, repeat it ``batch`` times,
encode, draw, decode and score ``k / batch`` times, then log-sum-exp. genmod draws all samples
of many images at once, in chunks of at most ``MAX_ROWS`` latents. Both use the same model,
images and k, and are timed in one process; the figure is importance samples per second.
Also prints the evaluator's peak extra memory at k = 5000.

Run by hand:  python benchmarks/eval_time.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import time
from pathlib import Path

import torch
from torch.distributions import Bernoulli, Normal

from genmod.config_loader import resolve_run_config
from genmod.data import binarize_once
from genmod.evaluation import MAX_ROWS, importance_sampled_nll
from genmod.plugins import load_registry
from genmod.runner import build_model


@torch.no_grad()
def per_image_nll(model, images: torch.Tensor, k: int, batch: int = 100) -> float:
    """Mean -log p(x) the way a plain per-image loop computes it."""
    nll = []
    for x in images:
        x_rep = torch.cat(batch * [x.unsqueeze(0)])
        log_w = []
        for _ in range(k // batch):
            posterior = model.encoder(x_rep)
            mu, std = posterior.mean, posterior.stddev
            z = mu + std * torch.randn_like(std)
            logits = model.decoder(z)
            log_px_z = Bernoulli(logits=logits.flatten(1)).log_prob(x_rep.flatten(1)).sum(-1)
            log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
            log_qz = Normal(mu, std).log_prob(z).sum(-1)
            log_w.append(log_px_z + log_pz - log_qz)
        nll.append(-(torch.logsumexp(torch.cat(log_w), 0) - math.log(k)))
    return float(torch.stack(nll).mean())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("GENMOD_DATA_DIR", "../shared/data"))
    )
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--k", type=int, default=1000)
    args = parser.parse_args()

    registry = load_registry()
    # Binarized, as for the published NLLs (and as a Bernoulli with argument checks requires).
    test = binarize_once(registry.dataset("mnist").build(args.data_dir, "test", False))
    torch.manual_seed(0)
    model = build_model(resolve_run_config(registry, model="mlp-vae"), registry, (1, 28, 28)).eval()
    images = test[: args.images]
    samples = args.images * args.k

    before = peak_rss_mb()
    torch.manual_seed(1)
    big = importance_sampled_nll(model, test[:64], k=5000)
    extra = peak_rss_mb() - before

    torch.manual_seed(1)
    start = time.perf_counter()
    genmod_nll = importance_sampled_nll(model, images, k=args.k).nll
    genmod_s = time.perf_counter() - start
    torch.manual_seed(1)
    start = time.perf_counter()
    loop_nll = per_image_nll(model, images, k=args.k)
    loop_s = time.perf_counter() - start

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {args.images} binarized test images x k={args.k} (untrained reference MLP)"
    )
    print(f"   genmod: {genmod_s:6.2f} s  {samples / genmod_s:10,.0f} samples/s  NLL {genmod_nll:.2f}")
    print(f"     loop: {loop_s:6.2f} s  {samples / loop_s:10,.0f} samples/s  NLL {loop_nll:.2f}")
    print(f"genmod / loop throughput = {loop_s / genmod_s:.2f}x")
    print(
        f"k=5000 on 64 images: {big.seconds:.1f} s, {64 * 5000 / big.seconds:,.0f} samples/s; "
        f"peak memory beyond the loaded data: {extra:.0f} MB (chunks of {MAX_ROWS} latents)"
    )


if __name__ == "__main__":
    main()
