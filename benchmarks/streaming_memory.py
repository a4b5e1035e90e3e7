"""Resident memory while a set larger than float32 memory would allow is streamed.

    python benchmarks/streaming_memory.py [--images 200000] [--size 64] [--steps 2000]

Generates ``--images`` RGB images of ``--size`` pixels square (a coloured rectangle on a
coloured ground; 200,000 of 64x64 are 2.5 GB as uint8 and would be 9.8 GB as float32), packs
them with :func:`genmod.streaming.pack`, and trains ``configs/conv-rgb.yaml`` on them with
``data.name: streaming`` for ``--steps`` steps, polling the memory of the training process and
its DataLoader workers twice a second. Prints the peak resident memory of the training process
and the peak proportional set size (PSS: shared pages counted once) of the whole process tree.
Needs ``genmod[streaming]`` and Linux's /proc.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from genmod.streaming import pack

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "conv-rgb.yaml"


def images(count: int, size: int, seed: int) -> Iterator[torch.Tensor]:
    """Coloured rectangles on coloured grounds, generated a thousand at a time."""
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, count, 1000):
        n = min(1000, count - start)
        ground, box = torch.randint(0, 256, (2, n, 3, 1, 1), generator=generator, dtype=torch.uint8)
        batch = ground.expand(n, 3, size, size).clone()
        corners = torch.randint(0, size // 2, (n, 2), generator=generator)
        for image, (top, left), colour in zip(batch, corners.tolist(), box, strict=True):
            image[:, top : top + size // 3, left : left + size // 3] = colour
        yield from batch


def _tree(pid: int) -> list[int]:
    children = [
        int(c)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for c in (task / "children").read_text().split()
    ]
    return [pid, *(p for child in children for p in _tree(child))]


def _kb(pid: int, field: str, file: str) -> int:
    for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--folder", type=Path, default=None, help="where to pack (default: a temp folder)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder or Path(scratch) / "packed"
        started = time.perf_counter()
        if not (folder / "genmod.json").is_file():
            shape = (3, args.size, args.size)
            splits = {
                "train": (shape, images(args.images, args.size, 0)),
                "test": (shape, images(1000, args.size, 1)),
            }
            pack(splits, folder, "generated", 64 * 2**20)
        packed_bytes = sum(f.stat().st_size for f in folder.rglob("*.mds"))
        print(f"packed {args.images:,} images of 3x{args.size}x{args.size} ({packed_bytes / 1e9:.2f} GB) "
              f"in {time.perf_counter() - started:.0f} s")  # fmt: skip

        out = Path(scratch) / "run"
        command = [
            sys.executable, "-m", "genmod", "run", "--config", str(RECIPE), "--out", str(out),
            "--data-dir", str(folder), "--epochs", "1", "--device", "cpu",
            "--set", "data.name=streaming", "--set", f"train.checkpoint_every={args.steps}",
        ]  # fmt: skip
        run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        peak_rss = peak_pss = 0
        started = time.perf_counter()
        # The checkpoint written at step --steps marks the end of the measured stretch.
        while run.poll() is None and not (out / "checkpoint.pt").is_file():
            try:
                tree = _tree(run.pid)
                peak_rss = max(peak_rss, _kb(run.pid, "VmRSS", "status"))
                peak_pss = max(peak_pss, sum(_kb(pid, "Pss:", "smaps_rollup") for pid in tree))
            except (FileNotFoundError, ProcessLookupError):
                pass
            time.sleep(0.5)
        seconds = time.perf_counter() - started
        if run.poll() is not None:
            raise SystemExit(f"the run ended early: {run.stderr.read() if run.stderr else ''}")
        run.send_signal(signal.SIGINT)
        run.wait()
    print(f"{args.steps} steps of the recipe in {seconds:.0f} s ({os.cpu_count()} cores)")
    print(f"peak resident memory of the training process: {peak_rss / 2**20:.2f} GB")
    print(
        f"peak PSS of the training process and its DataLoader workers: {peak_pss / 2**20:.2f} GB (target < 2 GB)"
    )


if __name__ == "__main__":
    main()
