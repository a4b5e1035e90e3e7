"""Built-in sample-quality metrics: FID, KID and precision/recall.

Their statistics are torch-fidelity's, computed on the features genmod hands them, so the
definitions are the published ones:

- **FID** (Heusel et al. 2017): the Fréchet distance between Gaussians fitted to the two sets.
- **KID** (Bińkowski et al. 2018): the unbiased MMD with the cubic polynomial kernel, averaged
  over ``subsets`` random subsets of ``subset_size`` images; its standard error is that of
  the mean over a partition of the images into disjoint subsets of that size.
- **precision/recall** (Kynkäänniemi et al. 2019): the share of generated images inside the
  real images' k-nearest-neighbour balls, and the share of real images inside the generated
  images' balls.
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from genmod.evaluators import Evaluator
from genmod.specs import EvaluatorSpec

DISTANCE_ROWS = 2000
"""Rows of each block of pairwise distances precision/recall computes: 2,000 x N float32
values at a time (80 MB against 10,000 images), whatever the number of samples."""


class KIDOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subsets: int = Field(100, ge=1, description="Random subsets the MMD is averaged over.")
    subset_size: int = Field(1000, ge=2, description="Images of each set in a subset.")
    seed: int = Field(0, description="Seed of the subsets' draws.")


class PRCOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    neighborhood: int = Field(3, ge=1, description="k of the k-nearest-neighbour balls.")


class FID(Evaluator):
    figures = ("fid",)

    def compute(self, generated: Tensor, real: Tensor) -> dict[str, float]:
        from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

        stats = [fid_features_to_statistics(features) for features in (generated, real)]
        value = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
        return {"fid": float(value)}


class KID(Evaluator):
    figures = ("kid", "kid_se")

    def __init__(self, options: KIDOptions) -> None:
        self.options = options
        self.size = options.subset_size
        """The subset size of the last computation: smaller where fewer images were given."""

    def compute(self, generated: Tensor, real: Tensor) -> dict[str, float]:
        from torch_fidelity.metric_kid import kid_features_to_metric

        # At most half of the smaller set: subsets of all its images would all be the same
        # subset, and their spread (the standard error) a meaningless zero.
        size = self.size = min(self.options.subset_size, len(generated) // 2, len(real) // 2)
        result = kid_features_to_metric(
            generated,
            real,
            kid_subsets=self.options.subsets,
            kid_subset_size=size,
            rng_seed=self.options.seed,
            verbose=False,
        )
        return {"kid": float(result["kernel_inception_distance_mean"]), "kid_se": self._se(generated, real)}

    def _se(self, generated: Tensor, real: Tensor) -> float:
        """The standard error from a partition of the images into disjoint subsets of the same
        size, whose KIDs are independent. The random subsets overlap, so their spread over
        the square root of their number would understate it; the partition's mean uses no
        image twice, so this errs high."""
        from torch_fidelity.metric_kid import kernel_mmd

        parts = min(len(generated), len(real)) // self.size
        seeded = torch.Generator().manual_seed(self.options.seed)
        kids = torch.tensor(
            [
                kernel_mmd(generated[g].numpy(), real[r].numpy())
                for g, r in zip(
                    torch.randperm(len(generated), generator=seeded)[: parts * self.size].split(self.size),
                    torch.randperm(len(real), generator=seeded)[: parts * self.size].split(self.size),
                    strict=True,
                )
            ]
        )
        return float(kids.std() / math.sqrt(parts))

    def describe(self) -> str:
        o = self.options
        return f"{o.subsets} subsets of {self.size}, cubic kernel, seed {o.seed}, se from disjoint subsets"


class PrecisionRecall(Evaluator):
    figures = ("precision", "recall")

    def __init__(self, options: PRCOptions) -> None:
        self.options = options

    def compute(self, generated: Tensor, real: Tensor) -> dict[str, float]:
        from torch_fidelity.metric_prc import calculate_precision_recall_part

        precision, recall = calculate_precision_recall_part(
            generated.float(), real.float(), self.options.neighborhood, batch_size=DISTANCE_ROWS
        )
        return {"precision": float(precision), "recall": float(recall)}

    def describe(self) -> str:
        return f"k = {self.options.neighborhood} nearest neighbours"


EVALUATORS = (
    EvaluatorSpec(
        name="fid",
        build=lambda options: FID(),
        description="Fréchet distance between the features' Gaussians (Heusel et al. 2017); lower is better.",
    ),
    EvaluatorSpec(
        name="kid",
        build=KID,
        options=KIDOptions,
        description="Kernel distance, unbiased MMD with a cubic kernel, with its standard error "
        "(Bińkowski et al. 2018); lower is better.",
    ),
    EvaluatorSpec(
        name="precision-recall",
        build=PrecisionRecall,
        options=PRCOptions,
        description="k-NN manifold precision (samples that look real) and recall (real images "
        "covered) (Kynkäänniemi et al. 2019); higher is better.",
    ),
)
"""genmod's built-in evaluators, registered by its built-in plugin."""
