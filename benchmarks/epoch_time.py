"""Seconds per training epoch of the reference MLP VAE (784-400-400-20, batch 100, 60,000
images), four ways, interleaved in one process, best of ``--repeats``.

1. genmod: ``genmod run mlp-vae``'s own epoch, as the runner reports it (the training steps
   plus the per-epoch test-set pass), with the defaults the command uses (``train.precision``
   and ``train.compile`` auto) and, for comparison, with both forced to fp32 and eager.
2. bare loop: a hand-written float32 PyTorch loop of the correct VAE over the same in-memory
   tensor (training only): BCE-with-logits + analytic KL, Adam.
   compiled fp32 loop: the same loop with the model compiled (``torch.compile``) and Adam's
   fused kernel: what any loop of these layers gets from the kernels genmod uses, without a
   runner around them (so the gap to it is genmod's own cost, test pass included).
3. seed style: the seed notebook's ``DataLoader(MNIST(transform=ToTensor()))`` with a sigmoid
   decoder and ``F.binary_cross_entropy``.
4. Pythae 0.1.2's ``TrainingPipeline`` with the seed architecture (``pip install
   "genmod[bench]"``; the row is skipped with a note when Pythae is not installed).

Every method is run once before timing (compilation, caches). Also prints the achieved
GFLOP/s against this machine's measured float32 and bfloat16 matrix-multiply peaks.
Run by hand, on an otherwise idle machine:  python benchmarks/epoch_time.py --data-dir ../shared/data

``--device cuda`` prints the same table on a GPU: every loop's model and the images on the
device (the seed-style loop copies each batch there, as the notebook would), Pythae with
CUDA, the products' peaks measured on the GPU, each epoch timed to the device's last kernel.

``--isa avx2`` measures a float32-only CPU (AMD Zen 2/3, Intel before Sapphire Rapids) on a
machine with AVX-512: it restarts itself with ``ATEN_CPU_CAPABILITY=avx2`` and
``ONEDNN_MAX_CPU_ISA=AVX2``, so that ATen's and oneDNN's kernels are the AVX2 ones and genmod's
``auto`` precision is float32, as on such a CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from genmod.config_loader import resolve_run_config
from genmod.data import as_float
from genmod.distributed import Topology
from genmod.plugins import load_registry
from genmod.precision import separate_kernel_caches
from genmod.progress import RunReporter
from genmod.runner import Run

# Multiply-adds per image of one forward pass: encoder 784-400-400-40, decoder 20-400-400-784.
MACS = 784 * 400 + 400 * 400 + 400 * 40 + 20 * 400 + 400 * 400 + 400 * 784
TRAIN_IMAGES, TEST_IMAGES = 60_000, 10_000
# Training is about three forward passes' work (forward, and backward's two products); genmod's
# epoch also makes one forward pass over the test set.
TRAIN_FLOP = 2 * MACS * 3 * TRAIN_IMAGES
GENMOD_FLOP = TRAIN_FLOP + 2 * MACS * TEST_IMAGES


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


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels, so that a timer stops after them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_epoch(model: BareVAE, optimizer: torch.optim.Optimizer, images: torch.Tensor, generator) -> float:
    start = time.perf_counter()
    for index in torch.randperm(len(images), generator=generator).split(100):
        loss = model(images[index.to(images.device)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    synchronize(images.device)
    return time.perf_counter() - start


def seed_epoch(
    model: BareVAE, optimizer: torch.optim.Optimizer, loader: DataLoader, device: torch.device
) -> float:
    start = time.perf_counter()
    for x, _ in loader:
        loss = model(x.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    synchronize(device)
    return time.perf_counter() - start


def genmod_epoch_runner(
    data_dir: Path, out_dir: Path, device: torch.device, **train: object
) -> Callable[[], float]:
    """One more epoch of a ``genmod run mlp-vae`` run each call; returns the epoch's seconds as
    the runner records them (``metrics.jsonl``'s ``seconds``)."""
    registry = load_registry()
    overrides = [
        f"data.root={data_dir}",
        f"train.device={device.type}",
        *(f"train.{key}={value}" for key, value in train.items()),
    ]
    config = resolve_run_config(registry, model="mlp-vae", overrides=overrides)
    run = Run(config, registry, Topology(), device, out_dir, RunReporter(Console(quiet=True)))

    def epoch() -> float:
        run.config.train.epochs = run.epoch + 1
        run.fit()
        return run.history[-1].seconds

    return epoch


def pythae_epoch_runner(
    images: torch.Tensor, out_dir: Path, device: torch.device
) -> Callable[[], float] | str:
    """One epoch of Pythae's TrainingPipeline on the seed architecture, or why not."""
    try:
        from pythae.models import VAE, VAEConfig
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
        from pythae.pipelines import TrainingPipeline
        from pythae.trainers import BaseTrainerConfig
    except ImportError:
        return 'not installed: pip install "genmod[bench]"'

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU())
            self.mean, self.log_var = nn.Linear(400, 20), nn.Linear(400, 20)

        def forward(self, x: torch.Tensor) -> ModelOutput:
            h = self.body(x.reshape(len(x), -1))
            return ModelOutput(embedding=self.mean(h), log_covariance=self.log_var(h))

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 784)
            )

        def forward(self, z: torch.Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=torch.sigmoid(self.body(z)).reshape(len(z), 1, 28, 28))

    model = VAE(
        VAEConfig(input_dim=(1, 28, 28), latent_dim=20, reconstruction_loss="bce"),
        encoder=Encoder(),
        decoder=Decoder(),
    )
    trainer = BaseTrainerConfig(
        output_dir=str(out_dir),
        num_epochs=1,
        learning_rate=1e-3,
        per_device_train_batch_size=100,
        per_device_eval_batch_size=100,
        no_cuda=device.type != "cuda",
        steps_saving=None,
    )
    data = images.numpy()

    def epoch() -> float:
        start = time.perf_counter()
        TrainingPipeline(training_config=trainer, model=model)(train_data=data)
        synchronize(device)
        return time.perf_counter() - start

    return epoch


def matmul_peak(dtype: torch.dtype, device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of a square matrix product in ``dtype`` on ``device``."""
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    a @ b
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def as_float32_only_cpu() -> None:
    """Restart this script with ATen's and oneDNN's AVX2 kernels (``--isa avx2``), and its
    compiled kernels kept apart from native ones."""
    if os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2":
        # Both are read when torch loads: set them for a fresh interpreter.
        env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    separate_kernel_caches()  # never the native run's cached kernels (genmod.precision)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("GENMOD_DATA_DIR", "../shared/data"))
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--isa", choices=("native", "avx2"), default="native", help="avx2: as on a float32-only CPU"
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="cuda: the same table on a GPU"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: this machine has no CUDA device torch can use")
    if args.isa == "avx2":
        as_float32_only_cpu()
    work = Path(tempfile.mkdtemp(prefix="genmod-epoch-time-"))

    # The bare loop and Pythae get float32 images, as hand-written code holds them.
    images = as_float(load_registry().dataset("mnist").build(args.data_dir, "train", False))
    torch.manual_seed(0)
    bare_model, seed_model = BareVAE().to(device), BareVAE(sigmoid_output=True).to(device)
    bare_opt = torch.optim.Adam(bare_model.parameters(), lr=1e-3)
    compiled_model = BareVAE().to(device)
    compiled_opt = torch.optim.Adam(compiled_model.parameters(), lr=1e-3, fused=True)
    compiled_model.compile()
    seed_opt = torch.optim.Adam(seed_model.parameters(), lr=1e-3)
    loader = DataLoader(
        datasets.MNIST(str(args.data_dir), train=True, transform=transforms.ToTensor()),
        batch_size=100,
        shuffle=True,
    )
    generator = torch.Generator().manual_seed(0)
    resident = images.to(device)  # as hand-written code holds them: on the device, once
    runs: dict[str, Callable[[], float]] = {
        "genmod (defaults)": genmod_epoch_runner(args.data_dir, work / "default", device),
        "genmod (fp32, eager)": genmod_epoch_runner(
            args.data_dir, work / "fp32", device, precision="fp32", compile="false"
        ),
        "bare fp32 loop": lambda: bare_epoch(bare_model, bare_opt, resident, generator),
        "compiled fp32 loop": lambda: bare_epoch(compiled_model, compiled_opt, resident, generator),
        "seed style": lambda: seed_epoch(seed_model, seed_opt, loader, device),
    }
    pythae = pythae_epoch_runner(images, work / "pythae", device)
    if callable(pythae):
        runs["Pythae 0.1.2"] = pythae
    for epoch in runs.values():  # warm-up: compilation, allocator and page caches
        epoch()
    best = {name: float("inf") for name in runs}
    for _ in range(args.repeats):
        for name, epoch in runs.items():
            best[name] = min(best[name], epoch())

    peak32, peak16 = matmul_peak(torch.float32, device), matmul_peak(torch.bfloat16, device)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.repeats}, "
        "interleaved"
    )
    from genmod.precision import native_bf16

    where = (
        f"GPU {torch.cuda.get_device_name(device)}"
        if device.type == "cuda"
        else f"kernels: ATen {torch.backends.cpu.get_cpu_capability()}, oneDNN ISA cap "
        f"{os.environ.get('ONEDNN_MAX_CPU_ISA', 'none')}"
    )
    print(f"{where}; precision auto = {'bf16' if native_bf16(device) else 'fp32'}")
    print(f"matmul peak (2048^2): fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s")
    bare = best["bare fp32 loop"]
    for name, seconds in best.items():
        print(
            f"{name:>21}: {seconds:6.2f} s/epoch  bare loop / this = {bare / seconds:4.2f}x  "
            f"{(GENMOD_FLOP if name.startswith('genmod') else TRAIN_FLOP) / seconds / 1e9:5.0f} GFLOP/s"
        )
    if not callable(pythae):
        print(f"{'Pythae 0.1.2':>21}: skipped ({pythae})")
    genmod = best["genmod (defaults)"]
    # The targets per kind of machine (#26): lower on a CPU without native bfloat16.
    fast = device.type == "cuda" or native_bf16(device)
    over_bare, over_pythae = (1.6, 2.0) if fast else (1.25, 1.6)
    print(f"genmod speed-up over the bare fp32 loop: {bare / genmod:.2f}x (target >= {over_bare})")
    if "Pythae 0.1.2" in best:
        print(
            f"genmod speed-up over Pythae 0.1.2:       {best['Pythae 0.1.2'] / genmod:.2f}x "
            f"(target >= {over_pythae})"
        )


if __name__ == "__main__":
    main()
