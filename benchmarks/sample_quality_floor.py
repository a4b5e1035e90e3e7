"""The floor of the sample-quality columns: real images scored as if they were samples.

Prints FID, KID and precision/recall of 10,000 MNIST training images against the 10,000 test
images, with genmod's shipped MNIST features and the evaluators' defaults, as ``genmod eval
--metric`` computes them for a model's samples: once on the 8-bit images and once on both
sets binarized once (the protocol of the binarized rows). A perfect model of the data would
score about this; also prints uniform noise, the other end of the scale.

Run by hand (``--write`` also saves both data rows for the reproduction table):
  python benchmarks/sample_quality_floor.py --data-dir ../shared/data --write
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

import genmod
from genmod.config import ComponentRef
from genmod.data import as_float, binarize_once
from genmod.features import NETWORKS
from genmod.quality import features_of

IMAGES = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument(
        "--write", action="store_true", help="save the binarized row as sample_quality_floor.json"
    )
    args = parser.parse_args()
    registry = genmod.registry()
    spec = registry.dataset("mnist")
    train, test = (spec.build(args.data_dir, split, False) for split in ("train", "test"))
    network = NETWORKS["mnist"].load().network
    evaluators = {
        name: registry.build_evaluator(ComponentRef(name=name)) for name in ("fid", "kid", "precision-recall")
    }
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}; mnist features, {IMAGES} vs {len(test)} images"
    )
    torch.manual_seed(0)
    cases = {
        "training images (8-bit)": (train[:IMAGES], test),
        "training images, binarized once": (binarize_once(train[:IMAGES]), binarize_once(test)),
        "uniform noise": (torch.rand(IMAGES, 1, 28, 28), test),
    }
    rows: dict[str, dict] = {}
    print(f"| {'scored':33} | FID | KID | precision | recall |")
    print("|---|---|---|---|---|")
    for name, (generated, real) in cases.items():
        g, r = features_of(network, as_float(generated)), features_of(network, as_float(real))
        figures, per_metric = {}, {}
        kind = "binarized" if "binarized" in name else "8-bit"
        for metric, evaluator in evaluators.items():
            per_metric[metric] = {"figures": evaluator.compute(g, r)}
            figures.update(per_metric[metric]["figures"])
        if name != "uniform noise":
            rows[kind] = per_metric
        print(
            f"| {name:33} | {figures['fid']:.3f} | {figures['kid']:.3f} ± {figures['kid_se']:.3f} "
            f"| {figures['precision']:.3f} | {figures['recall']:.3f} |"
        )
    if args.write:
        (Path(__file__).parent / "sample_quality_floor.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
