"""The reproduction table: genmod's shipped models on dynamically binarized MNIST.

    python benchmarks/reproduction.py ship RUN_DIR NAME   # RUN_DIR's best weights -> pretrained/NAME
    python benchmarks/reproduction.py table               # pretrained/*/ -> benchmarks/reproduction.md

``ship`` copies what anyone needs to check a row: the best validation epoch's weights
(``best.pt``, read with ``weights_only=True``), the run's ``config.yaml``, ``metrics.jsonl`` and
``eval.json`` (from ``genmod eval RUN_DIR --k 5000`` on the full test set). ``table`` reads every
``pretrained/NAME`` and writes the Markdown table with the published and Pythae figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "pretrained"
TABLE = ROOT / "benchmarks" / "reproduction.md"
SHIPPED = ("best.pt", "config.yaml", "metrics.jsonl", "eval.json")

# Published IS-NLL (nats) and Pythae's reproduction of the same model, where there is one.
REFERENCES = {
    "vae": ("VAE, 784-200-200-50 tanh", 86.76, "Burda et al. 2016, Table 1, k=1", 89.78),
    "iwae-k5": ("IWAE, k = 5, same architecture", 85.54, "Burda et al. 2016, Table 1", None),
    "vampprior": (
        "VAE + VampPrior, gated 300-300, 40 latents, K=500",
        85.57,
        "Tomczak & Welling 2018",
        85.79,
    ),
    "hvae-vampprior": ("HVAE + VampPrior, two layers of 40", 83.19, "Tomczak & Welling 2018", None),
}


def ship(run_dir: Path, name: str, *, half: bool = False) -> None:
    """Copy the run's records into ``pretrained/NAME``. With ``half`` the weights are stored as
    float16 (they load into the float32 model as they are), which halves a file that would
    pass the 10 MB limit; the row's ``eval.json`` is then left to ``genmod eval
    pretrained/NAME --k 5000``, so that it describes the weights that ship."""
    files = [f for f in SHIPPED if not (half and f == "eval.json")]
    missing = [f for f in files if not (run_dir / f).is_file()]
    if missing:
        raise SystemExit(f"{run_dir} lacks {', '.join(missing)} (eval.json: genmod eval {run_dir} --k 5000)")
    target = PRETRAINED / name
    target.mkdir(parents=True, exist_ok=True)
    for file in files:
        shutil.copy2(run_dir / file, target / file)
    if half:
        import torch

        weights = torch.load(target / "best.pt", weights_only=True)
        weights["model"] = {
            key: value.half() if value.is_floating_point() else value
            for key, value in weights["model"].items()
        }
        torch.save(weights, target / "best.pt")
        print(f"now run: genmod eval {target} --k 5000")
    print(f"shipped {run_dir} as {target}")


def table() -> None:
    rows = [
        "| model | recipe | epochs (best) | training time | IS-NLL, k=5000, 10,000 test images | published | Pythae |",
        "|---|---|---|---|---|---|---|",
    ]
    for folder in sorted(p for p in PRETRAINED.iterdir() if p.is_dir()):
        evaluation = json.loads((folder / "eval.json").read_text())
        history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
        label, published, source, pythae = REFERENCES.get(folder.name, (folder.name, None, "", None))
        hours = sum(row["seconds"] for row in history) / 3600
        rows.append(
            f"| {label} | `configs/repro-{folder.name}.yaml` | {len(history)} ({evaluation['epoch']}) "
            f"| {hours:.1f} h | **{evaluation['nll']:.2f} ± {evaluation['nll_se']:.2f}** "
            f"| {published if published else '-'} ({source}) | {pythae if pythae else '-'} |"
        )
    for name, (label, published, source, pythae) in REFERENCES.items():
        if not (PRETRAINED / name).is_dir():
            rows.append(
                f"| {label} | `configs/repro-{name}.yaml` | not shipped yet | | | {published} ({source}) "
                f"| {pythae if pythae else '-'} |"
            )
    TABLE.write_text(
        "# Reproduction table\n\nWritten by `python benchmarks/reproduction.py table` from `pretrained/*/`; "
        "see the README's evaluation section for how each row was trained and checked.\n\n"
        + "\n".join(rows)
        + "\n"
    )
    print("\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    shipping = commands.add_parser("ship", help="copy a run's best weights and records into pretrained/NAME")
    shipping.add_argument("run_dir", type=Path)
    shipping.add_argument("name")
    shipping.add_argument("--half", action="store_true", help="store the weights as float16")
    commands.add_parser("table", help="write benchmarks/reproduction.md from pretrained/")
    args = parser.parse_args()
    if args.command == "ship":
        ship(args.run_dir, args.name, half=args.half)
    else:
        table()


if __name__ == "__main__":
    main()
