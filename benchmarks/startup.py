"""How long the CLI takes to answer: ``--version``, ``--help``, ``list``, ``plugins``.

Each command runs as a fresh process (as a user types it), ``--repeats`` times; the best time
counts. Targets: --help and --version under 0.5 s (they import neither torch nor any plugin),
list under 2 s (it imports every plugin, and with them torch). Run by hand:

    python benchmarks/startup.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

COMMANDS = {"--version": 0.5, "--help": 0.5, "list": 2.0, "plugins": 2.0}


def seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "genmod", *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"best of {args.repeats}, each a fresh `python -m genmod` process")
    for command, target in COMMANDS.items():
        best = min(seconds([command]) for _ in range(args.repeats))
        verdict = "ok" if best < target else "SLOW"
        print(f"genmod {command:<10} {best:5.2f} s   (target < {target} s) {verdict}")


if __name__ == "__main__":
    main()
