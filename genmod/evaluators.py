"""What a sample-quality metric is: an :class:`Evaluator` compares the features of generated
images with those of real ones (a :mod:`genmod.features` network computes both) and returns
its figures by name. genmod's own, FID, KID and precision/recall, are in
:mod:`genmod.builtins.evaluators`; a plugin adds its own with ``register_evaluators`` and an
:class:`~genmod.EvaluatorSpec`.
"""

from __future__ import annotations

import abc
from typing import ClassVar

from torch import Tensor


class Evaluator(abc.ABC):
    """A sample-quality metric computed from image features."""

    figures: ClassVar[tuple[str, ...]] = ()
    """The names :meth:`compute` returns, the headline first; with ``train.sample_metrics``
    each is logged as ``validation/NAME``, which ``train.monitor`` can follow."""

    @abc.abstractmethod
    def compute(self, generated: Tensor, real: Tensor) -> dict[str, float]:
        """The figures (by name; the first is the headline) comparing ``generated`` with
        ``real``, each ``(images, features)`` in float64."""

    def describe(self) -> str:
        """How the figures were computed, beyond the features and images (its settings)."""
        return ""
