"""Seconds per training epoch of the reference MLP VAE, three ways, in one process.

1. genmod: the runner's training loop (``genmod.training.train_epoch``) on the model the
   ``mlp-vae`` plugin builds from its shipped recipe.
2. bare: a hand-written PyTorch loop over the same in-memory tensor, same architecture,
   BCE-with-logits + analytic KL, no framework.
3. seed: the seed notebook's style, ``DataLoader(MNIST(transform=ToTensor()), batch_size=100,
   shuffle=True)`` with a sigmoid decoder and ``F.binary_cross_entropy``.

Each is timed ``--repeats`` times, interleaved so that machine noise hits all three alike;
the best time counts. Run by hand:  python benchmarks/epoch_time.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from genmod.config_loader import resolve_run_config
from genmod.optim import make_optimizer
from genmod.plugins import load_registry
from genmod.runner import build_model
from genmod.training import train_epoch


class BareVAE(nn.Module):
    def __init__(self, sigmoid_output: bool = False) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 40)
        )
        self.decoder = nn.Sequential(
            nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 784)
        )
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 784)
        mean, log_var = self.encoder(x).chunk(2, dim=-1)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        out = self.decoder(z)
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum()
        if self.sigmoid_output:
            return F.binary_cross_entropy(torch.sigmoid(out), x, reduction="sum") + kl
        return F.binary_cross_entropy_with_logits(out, x, reduction="sum") + kl


def bare_epoch(model: BareVAE, optimizer: torch.optim.Optimizer, images: torch.Tensor, generator) -> None:
    for index in torch.randperm(len(images), generator=generator).split(100):
        loss = model(images[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def seed_epoch(model: BareVAE, optimizer: torch.optim.Optimizer, loader: DataLoader) -> None:
    for x, _ in loader:
        loss = model(x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("GENMOD_DATA_DIR", "../shared/data"))
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    registry = load_registry()
    images = registry.dataset("mnist").build(args.data_dir, "train", False)
    config = resolve_run_config(registry, model="mlp-vae")

    torch.manual_seed(0)
    genmod_model = build_model(config, registry, tuple(images.shape[1:]))
    genmod_opt = make_optimizer(genmod_model.parameters(), config.train)  # what the runner uses
    bare_model = BareVAE()
    bare_opt = torch.optim.Adam(bare_model.parameters(), lr=1e-3)
    seed_model = BareVAE(sigmoid_output=True)
    seed_opt = torch.optim.Adam(seed_model.parameters(), lr=1e-3)
    loader = DataLoader(
        datasets.MNIST(str(args.data_dir), train=True, transform=transforms.ToTensor()),
        batch_size=100,
        shuffle=True,
    )
    generator = torch.Generator().manual_seed(0)

    runs = {
        "genmod": lambda: train_epoch(genmod_model, genmod_opt, images, 100, generator, epoch=1),
        "bare loop": lambda: bare_epoch(bare_model, bare_opt, images, generator),
        "seed style": lambda: seed_epoch(seed_model, seed_opt, loader),
    }
    best = {name: float("inf") for name in runs}
    for _ in range(args.repeats):
        for name, epoch in runs.items():
            start = time.perf_counter()
            epoch()
            best[name] = min(best[name], time.perf_counter() - start)

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.repeats}"
    )
    for name, seconds in best.items():
        print(f"{name:>11}: {seconds:6.2f} s/epoch")
    print(f"genmod / bare loop  = {best['genmod'] / best['bare loop']:.3f}  (target <= 1.10)")
    print(f"genmod / seed style = {best['genmod'] / best['seed style']:.3f}  (target < 1)")


if __name__ == "__main__":
    main()
