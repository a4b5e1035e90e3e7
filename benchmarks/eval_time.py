"""Seconds for ``genmod eval --k 5000``: genmod's evaluator with its defaults, against the
chunked float32 evaluator genmod 0.2 shipped (``--precision fp32 --no-compile``, kept here as
the peer) and a per-image loop, on the same trained model, images and seed, in one process.

The loop is the structure of Pythae's ``get_nll``: for each image, repeat it ``batch`` times,
encode, draw, decode and score ``k / batch`` times, then log-sum-exp. Times on ``--images``
test images are extrapolated to the full 10,000-image test set; ``--images 10000`` measures it.
Also prints each NLL and its difference from the float32 evaluator's (same samples' seed).

Run by hand, on an otherwise idle machine:
  python benchmarks/eval_time.py --run pretrained/vae --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.distributions import Bernoulli, Normal

import genmod
from genmod.evaluation import importance_sampled_nll

TEST_IMAGES = 10_000


@torch.no_grad()
def per_image_nll(model, images: torch.Tensor, k: int, batch: int = 100) -> float:
    """Mean -log p(x) the way a plain per-image loop computes it (a VAE with a standard normal
    prior and a Bernoulli likelihood)."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("pretrained/vae"), help="A trained run folder.")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("GENMOD_DATA_DIR", "../shared/data"))
    )
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--skip-loop", action="store_true", help="Leave the per-image loop out.")
    args = parser.parse_args()
    os.environ["GENMOD_DATA_DIR"] = str(args.data_dir)

    model = genmod.load(args.run)
    images = genmod.dataset(args.run).test[: args.images]
    methods: dict[str, Callable[[], float]] = {
        "genmod (defaults)": lambda: importance_sampled_nll(model, images, args.k).nll,
        "genmod 0.2 (fp32, eager)": lambda: (
            importance_sampled_nll(model, images, args.k, precision="fp32", compile=False).nll
        ),
    }
    if not args.skip_loop:
        methods["per-image loop"] = lambda: per_image_nll(model, images, args.k)
    # Compile once beforehand on a few images, so the timed run is what a full-set run sees.
    importance_sampled_nll(model, images[:12], args.k, compile=True)

    results: dict[str, tuple[float, float]] = {}
    for name, method in methods.items():
        torch.manual_seed(0)
        start = time.perf_counter()
        nll = method()
        results[name] = (time.perf_counter() - start, nll)

    scale = TEST_IMAGES / len(images)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {args.run}, {len(images)} test images, k={args.k}, seed 0"
    )
    reference_s, reference_nll = results["genmod 0.2 (fp32, eager)"]
    for name, (seconds, nll) in results.items():
        print(
            f"{name:>25}: {seconds:7.1f} s  ({seconds * scale:6.0f} s for {TEST_IMAGES:,} images)  "
            f"NLL {nll:.4f} ({nll - reference_nll:+.4f})  {reference_s / seconds:4.2f}x"
        )
    genmod_s = results["genmod (defaults)"][0]
    print(f"genmod speed-up over genmod 0.2's evaluator: {reference_s / genmod_s:.2f}x (target >= 3)")
    if "per-image loop" in results:
        print(
            f"genmod speed-up over the per-image loop:     {results['per-image loop'][0] / genmod_s:.2f}x (target >= 4)"
        )


if __name__ == "__main__":
    main()
