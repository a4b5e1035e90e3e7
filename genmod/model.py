"""The contract of any model genmod trains: a per-example bound with named terms.

:class:`GenerativeModel` is what a model plugin's ``build`` returns. The runner, ``genmod
eval``, ``sample``, ``reconstruct``, ``metrics.jsonl``, the loss plot, ``genmod runs`` and
the trackers use only this contract, so a model with two stochastic layers, a flow posterior
or no KL term at all is trained and inspected like the reference VAE.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Bound:
    """A per-example upper bound on ``-log p(x)`` in nats, and its named parts.

    ``value`` has shape ``(batch,)``; every entry of ``terms`` has the same shape and their
    names are the model's :attr:`GenerativeModel.terms`. For a VAE the terms are
    ``reconstruction`` and ``kl`` and sum to ``value`` (the negative ELBO); an IWAE's bound has
    no such parts.
    """

    value: Tensor
    terms: Mapping[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingProgress:
    """Where training is, for models that depend on it (KL warm-up, annealed temperatures).

    The training loop sets :attr:`GenerativeModel.progress` before every step, from the
    checkpointed epoch and step, so a resumed run sees exactly the values of an uninterrupted
    one. Outside training (evaluation, sampling) it stays at the last value set.
    """

    epoch: int = 1
    """The epoch being trained, from 1."""
    step: int = 0
    """Steps done in this epoch."""
    steps_per_epoch: int = 1

    @property
    def epochs_done(self) -> float:
        """Training done so far in epochs, fractional: 0 at the first step, 2.5 halfway through epoch 3."""
        return self.epoch - 1 + self.step / self.steps_per_epoch

    def ramp(self, epochs: float) -> float:
        """A linear warm-up from 0 to 1 over the first ``epochs`` epochs (1 if ``epochs`` is 0)."""
        return self._ramp(epochs) if epochs else 1.0

    def _ramp(self, epochs: float) -> float:
        # Left out of compiled graphs (genmod.precision marks it when it first compiles): a
        # compiled model would otherwise guard on the step and recompile at every one. Without
        # a warm-up ``ramp`` never gets here, so the graph is not broken at all.
        return min(1.0, self.epochs_done / epochs)


class GenerativeModel(nn.Module, metaclass=abc.ABCMeta):
    """Any model trained on a per-example bound.

    Subclasses implement :meth:`loss` and :meth:`sample`, name their bound's parts in
    :attr:`terms`, and may implement :meth:`reconstruct` and :meth:`log_importance_weights`
    (``genmod eval`` needs the latter; models without it are refused in one line).
    """

    terms: ClassVar[tuple[str, ...]] = ()
    """The names of :attr:`Bound.terms`, fixed for the model (reported in metrics.jsonl)."""

    def __init__(self) -> None:
        super().__init__()
        self.progress = TrainingProgress()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # Samples and reconstructions are for looking at: never part of a graph, so that
        # ``plt.imshow(model.sample(64)[0, 0])`` works and no memory is held for a backward.
        for name in ("sample", "reconstruct"):
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "_without_grad", False):
                wrapped = torch.no_grad()(method)
                wrapped._without_grad = True
                setattr(cls, name, wrapped)

    @abc.abstractmethod
    def loss(self, x: Tensor) -> tuple[Tensor, Bound]:
        """The scalar training objective for the batch ``x`` and the bound behind it.

        The objective is what gradients follow (it may weight or floor terms, or use a tighter
        bound); the :class:`Bound` is what genmod reports, unweighted.
        """

    @property
    def levels(self) -> int | None:
        """The values each pixel takes when the model is a distribution over discrete images
        (256 for 8-bit ones), else ``None``; genmod then also reports bounds in bits per
        dimension. By default its ``likelihood``'s :attr:`~genmod.Likelihood.levels`, for the
        models composed of one."""
        return getattr(getattr(self, "likelihood", None), "levels", None)

    def forward(self, x: Tensor) -> tuple[Tensor, Bound]:
        """The training objective; ``forward`` so that wrappers such as DDP see the call."""
        return self.loss(x)

    @abc.abstractmethod
    def sample(self, n: int) -> Tensor:
        """``n`` images of the data's shape (computed without gradients, in every subclass)."""

    def reconstruct(self, x: Tensor) -> Tensor:
        """``x`` passed through the model (optional; without gradients, like :meth:`sample`)."""
        raise NotImplementedError(f"{type(self).__name__} does not reconstruct images")

    def log_importance_weights(self, x: Tensor, k: int, chunk_size: int = 500) -> Tensor:
        """``log p(x, z_i) - log q(z_i|x)`` for ``k`` samples per example, shape ``(k, batch)``
        (optional; ``genmod eval`` estimates ``log p(x)`` from these)."""
        raise NotImplementedError(f"{type(self).__name__} has no importance weights")

    @classmethod
    def can(cls, method: str) -> bool:
        """Whether the model implements the optional ``method`` (``reconstruct``,
        ``log_importance_weights``)."""
        return getattr(cls, method) is not getattr(GenerativeModel, method)
