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
SHIPPED = ("best.pt", "config.yaml", "metrics.jsonl", "machine.json", "eval.json")

# Each row's family, published NLL (nats) and Pythae's reproduction of the same model, where
# there is one.
REFERENCES = {
    "vae": ("VAE", "VAE, 784-200-200-50 tanh", 86.76, "Burda et al. 2016, Table 1, k=1", 89.78),
    "iwae-k5": ("VAE", "IWAE, k = 5, same architecture", 85.54, "Burda et al. 2016, Table 1", None),
    "vampprior": (
        "VAE",
        "VAE + VampPrior, gated 300-300, 40 latents, K=500",
        85.57,
        "Tomczak & Welling 2018",
        85.79,
    ),
    "hvae-vampprior": ("VAE", "HVAE + VampPrior, two layers of 40", 83.19, "Tomczak & Welling 2018", None),
    "pixelcnn": (
        "autoregressive",
        "Gated PixelCNN, 64 maps, 7x7 + 8 gated 3x3 layers",
        81.30,
        "van den Oord et al. 2016, PixelCNN; static binarization",
        None,
    ),
    "glow": (
        "flow",
        "Glow, 2 scales of 8 steps, 8-bit MNIST",
        "1.05 bits/dim",
        "Kingma & Dhariwal 2018",
        None,
    ),
    "diffusion": ("diffusion", "Variational diffusion model, U-Net of 32 maps, 8-bit MNIST", None, "", None),
    "dcgan": ("GAN", "DCGAN, 8-bit MNIST (no likelihood)", None, "", None),
}
FLOOR = ROOT / "benchmarks" / "sample_quality_floor.json"
"""The training images scored as samples (benchmarks/sample_quality_floor.py --write)."""


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


def _quality(figures: dict) -> str:
    """The FID, KID, precision and recall cells of a row."""
    fid, kid, prc = (figures.get(m, {}).get("figures", {}) for m in ("fid", "kid", "precision-recall"))
    cells = [
        f"{fid['fid']:.2f}" if fid else "-",
        f"{kid['kid']:.0f} ± {kid['kid_se']:.0f}" if kid else "-",
        f"{prc['precision']:.3f}" if prc else "-",
        f"{prc['recall']:.3f}" if prc else "-",
    ]
    return " | ".join(cells)


def table() -> None:
    rows = [
        "| family | model | recipe | epochs (best) | training time | test NLL (nats), 10,000 images | published "
        "| Pythae | FID | KID | precision | recall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for folder in sorted(p for p in PRETRAINED.iterdir() if p.is_dir()):
        evaluation = json.loads((folder / "eval.json").read_text())
        history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
        family, label, published, source, pythae = REFERENCES.get(
            folder.name, ("", folder.name, None, "", None)
        )
        hours = sum(row["seconds"] for row in history) / 3600
        how = f"IS, k={evaluation['k']}" if evaluation.get("k") else evaluation.get("quantity", "")
        if "nll" not in evaluation:
            figure = "- (no likelihood)"
        elif evaluation.get("bits_per_dim") is not None:
            per_dim = evaluation["bits_per_dim"] / evaluation["nll"]  # bits/dim per nat
            figure = (
                f"**{evaluation['bits_per_dim']:.3f} ± {evaluation['nll_se'] * per_dim:.3f} bits/dim** "
                f"({evaluation['nll']:.2f} ± {evaluation['nll_se']:.2f} nats; {how})"
            )
        else:
            figure = f"**{evaluation['nll']:.2f} ± {evaluation['nll_se']:.2f}** ({how})"
        epoch = evaluation.get(
            "epoch", next(iter(evaluation.get("sample_quality", {}).values()), {}).get("epoch")
        )
        rows.append(
            f"| {family} | {label} | `configs/repro-{folder.name}.yaml` | {len(history)} ({epoch}) "
            f"| {hours:.1f} h | {figure} "
            f"| {published or '-'}{f' ({source})' if source else ''} | {pythae or '-'} "
            f"| {_quality(evaluation.get('sample_quality', {}))} |"
        )
    for name, (family, label, published, source, pythae) in REFERENCES.items():
        if not (PRETRAINED / name).is_dir():
            rows.append(
                f"| {family} | {label} | `configs/repro-{name}.yaml` | not shipped yet | | "
                f"| {published or '-'}{f' ({source})' if source else ''} | {pythae or '-'} | | | | |"
            )
    if FLOOR.is_file():
        for kind, floor in json.loads(FLOOR.read_text()).items():
            rows.append(
                f"| (data) | 10,000 training images scored as samples, {kind}: the floor | | | | | | "
                f"| {_quality(floor)} |"
            )
    text = TABLE.read_text() if TABLE.is_file() else ""
    rest = text[text.index("\n## ") :] if "\n## " in text else "\n"
    TABLE.write_text(
        "# Reproduction table\n\nWritten by `python benchmarks/reproduction.py table` from `pretrained/*/`; "
        "see the README's evaluation section for how each row was trained and checked. NLLs on "
        "dynamically binarized MNIST (the test set binarized once); FID, KID and precision/recall "
        "from 10,000 samples against the 10,000 test images with genmod's MNIST features "
        "(`genmod eval pretrained/NAME --metric fid --metric kid --metric precision-recall`; not "
        "comparable with Inception FIDs), the samples as each model's `sample` returns them (a "
        "Bernoulli VAE's pixel probabilities) against the binarized test images.\n\n"
        + "\n".join(rows)
        + "\n"
        + rest
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
