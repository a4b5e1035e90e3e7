"""Wall time of ``genmod run mlp-vae`` when the cores are shared, against the same runs alone.

Three situations, each for a compiled and an eager run (``train.compile`` true and false):

1. alone: one run on an otherwise idle machine;
2. sweep: two runs started at once on the same cores (what ``genmod sweep --parallel 2`` and a
   user starting two runs do), against the two one after the other;
3. neighbour: one run beside a CPU-bound neighbour (a busy loop on every usable core);
4. staggered: a second run started once the first has finished its first epoch (a user
   starting a run while another trains), against the two one after the other.

Each run trains ``--epochs`` epochs of ``--limit`` MNIST images from the recipe, in its own
process, as a user would start it. Prints wall times, and the ratio of each shared situation
to its baseline (two sequential runs for the sweep, the lone run for the neighbour): 1.0 is no
loss from sharing, 2.0 is what sharing two cores fairly costs a run that uses both.

Run by hand, on an otherwise idle machine:
    python benchmarks/shared_cores.py --data-dir ../shared/data
``--env KEY=VALUE`` sets a variable for the runs (e.g. ``OMP_WAIT_POLICY=ACTIVE`` to compare).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from genmod.openmp import usable_cores


def run(out: Path, compiled: bool, args: argparse.Namespace, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "genmod", "run", "mlp-vae", "--out", str(out), "--device", "cpu",
        "--epochs", str(args.epochs), "--data-dir", str(args.data_dir),
        "--set", f"data.limit={args.limit}", "--set", f"train.compile={str(compiled).lower()}",
        "--set", "train.sample_epochs=[]",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def wait(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(
                f"a run failed: {process.stderr.read().decode()[-500:] if process.stderr else ''}"
            )


def busy() -> None:
    while True:
        pass


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def situations(
    compiled: bool,
    fresh: Callable[[], Path],
    args: argparse.Namespace,
    env: dict[str, str],
    cores: int,
) -> tuple[float, float, float, float, float]:
    """Seconds: alone, two in turn, two at once, alone beside a busy loop on every core, the
    second started after the first's first epoch."""

    def start() -> subprocess.Popen[bytes]:
        return run(fresh(), compiled, args, env)

    wait(start())  # warm caches (inductor's on-disk cache included)
    alone = timed(lambda: wait(start()))

    def in_turn() -> None:
        wait(start())
        wait(start())

    sequential = timed(in_turn)
    together = timed(lambda: wait(start(), start()))
    loops = [multiprocessing.Process(target=busy, daemon=True) for _ in range(cores)]
    for loop in loops:
        loop.start()
    try:
        beside = timed(lambda: wait(start()))
    finally:
        for loop in loops:
            loop.terminate()
    return alone, sequential, together, beside, timed(lambda: staggered(compiled, fresh, args, env))


def staggered(
    compiled: bool, fresh: Callable[[], Path], args: argparse.Namespace, env: dict[str, str]
) -> None:
    out = fresh()
    first = run(out, compiled, args, env)
    while not (out / "metrics.jsonl").exists():  # written when its first epoch ends
        if first.poll() is not None:
            break
        time.sleep(0.05)
    wait(first, run(fresh(), compiled, args, env))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("GENMOD_DATA_DIR", "../shared/data"))
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=20_000)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the runs")
    args = parser.parse_args()
    env = {**os.environ, **dict(item.split("=", 1) for item in args.env)}
    cores = usable_cores()
    print(f"CPU: {platform.processor() or platform.machine()}, {cores} usable cores; runs: {args.epochs} epochs of "
          f"{args.limit} images; extra env: {' '.join(args.env) or 'none'}")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        counter = iter(range(1000))

        def fresh() -> Path:
            return folder / f"run{next(counter)}"

        for compiled in (True, False):
            rows.append(("compiled" if compiled else "eager", *situations(compiled, fresh, args, env, cores)))
    print(
        f"{'':9} {'alone':>8} {'2 in turn':>10} {'2 at once':>10} {'ratio':>6} {'+ busy loop':>12} {'ratio':>6}"
        f" {'staggered':>10} {'ratio':>6}"
    )
    for mode, alone, sequential, together, beside, later in rows:
        print(f"{mode:9} {alone:7.1f}s {sequential:9.1f}s {together:9.1f}s {together / sequential:6.2f} "
              f"{beside:11.1f}s {beside / alone:6.2f} {later:9.1f}s {later / sequential:6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
