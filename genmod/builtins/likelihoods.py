from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent

from genmod.components import Likelihood


class BernoulliLikelihood(Likelihood):
    """Pixel intensities in [0, 1] scored as Bernoulli probabilities on decoder logits.

    ``log_prob`` is ``-BCE_with_logits``, stable for any logit. Intensities that are not 0 or
    1 are allowed, as in the seed notebook, so argument validation is off.
    """

    def __init__(self, data_ndim: int) -> None:
        super().__init__()
        self.data_ndim = data_ndim

    def forward(self, params: Tensor) -> Distribution:
        return Independent(Bernoulli(logits=params, validate_args=False), self.data_ndim)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)
