"""The contract of any model genmod trains, whatever its family.

:class:`GenerativeModel` is what a model plugin's ``build`` returns. The runner, ``genmod
eval``, ``sample``, ``reconstruct``, ``metrics.jsonl``, the loss plot, ``genmod runs`` and
the trackers use only this contract, so a flow, an autoregressive model, a diffusion model
or a GAN is trained and inspected like the reference VAE. What a model offers is declared by
what it implements:

- ``loss(x)``: an objective and the per-example :class:`Bound` behind it; the runner's
  automatic loop then owns optimization (one optimizer, ``train``'s settings).
- ``configure_optimizers`` and ``training_step``: the model owns its step (a GAN's two
  optimizers), given a :class:`~genmod.Step` that does backward, clipping and updates.
- ``log_importance_weights`` (latent-variable models: ``genmod eval`` reports an IS-NLL),
  ``log_likelihood`` (an exact one: flows, autoregressive models) or ``evaluation_bound``
  (a bound that differs from the training estimate, e.g. a diffusion model's over all
  timesteps); a model with none of them (a GAN) has no likelihood to report.
- ``configure_callbacks``: code that runs after every optimizer step and every epoch.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from genmod.bound import Bound

if TYPE_CHECKING:
    from pydantic import BaseModel

    from genmod.callbacks import Callback
    from genmod.checks import Probe
    from genmod.config import TrainConfig
    from genmod.optim import OptimizerFactory
    from genmod.step import Step

__all__ = ["Bound", "GenerativeModel", "TrainingProgress"]


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
    """Any generative model of images.

    Subclasses implement :meth:`sample`, and :meth:`loss` or :meth:`training_step`; they name
    their bound's parts in :attr:`terms` and the bound itself in :attr:`bound`, and may
    implement the optional methods the module docstring lists (:meth:`can` says which).
    """

    terms: ClassVar[tuple[str, ...]] = ()
    """The names of :attr:`Bound.terms`, fixed for the model (reported in metrics.jsonl)."""
    bound: ClassVar[str | None] = "bound"
    """What :attr:`Bound.value` is, as every report names it: ``-ELBO`` for a VAE, ``NLL``
    for an exact likelihood, ``diffusion bound``...; ``None`` for a model with no bound on
    ``-log p(x)`` at all (a GAN), whose reports show only its terms."""
    sample_options: ClassVar[type[BaseModel] | None] = None
    """The pydantic class of the keyword options :meth:`sample` takes besides ``n`` (a
    diffusion model's sampler and steps), which ``genmod sample --option KEY=VALUE`` validates
    and passes; ``None``: it takes none."""
    evaluation_cost: int = 1
    """Network passes per image and sample in evaluation (a diffusion model's steps; set in
    ``__init__`` where it depends on the config): the evaluator sizes its batches by it, so
    that memory stays bounded."""

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

    def loss(self, x: Tensor) -> tuple[Tensor, Bound]:
        """The scalar training objective for the batch ``x`` and the bound behind it.

        The objective is what gradients follow (it may weight or floor terms, or use a tighter
        bound); the :class:`Bound` is what genmod reports, unweighted. Every model implements
        this or :meth:`training_step`; the runner checks which when it builds the model.
        """
        raise NotImplementedError(f"{type(self).__name__} implements neither loss nor training_step")

    def configure_optimizers(self, optimizer: OptimizerFactory) -> dict[str, torch.optim.Optimizer]:
        """The model's optimizers by name, each stepped by :meth:`training_step` through
        :meth:`~genmod.Step.update` and given ``train``'s learning-rate schedule.

        ``optimizer(parameters, lr=..., betas=..., weight_decay=...)`` makes ``train.optimizer``
        with ``train``'s settings, any of them overridden. By default: one optimizer, ``model``,
        over every parameter.
        """
        return {"model": optimizer(self.parameters())}

    def training_step(self, x: Tensor, step: Step) -> Bound:
        """Update the weights on the batch ``x`` and return the :class:`Bound` to report.

        By default :meth:`loss`'s objective updates the one optimizer (the runner's automatic
        loop). A model with several optimizers overrides this and calls ``step.update(loss,
        "name")`` for each; it runs under ``train.precision``'s autocast.
        """
        objective, bound = step.forward(x)
        step.update(objective)
        return bound

    def configure_callbacks(self, train: TrainConfig) -> dict[str, Callback]:
        """Callbacks by name, run after every optimizer step and every epoch and checkpointed
        with the run (see :class:`genmod.Callback`); none by default."""
        return {}

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

    def log_likelihood(self, x: Tensor) -> Tensor:
        """The exact ``log p(x)`` per example in nats, shape ``(batch,)`` (optional: flows and
        autoregressive models; ``genmod eval`` reports its mean as the exact NLL). A model
        with :meth:`log_importance_weights` is evaluated through those instead."""
        raise NotImplementedError(f"{type(self).__name__} has no exact likelihood")

    def evaluation_bound(self, x: Tensor) -> Bound:
        """The bound ``genmod eval`` reports, where it differs from training's (optional: a
        diffusion model's bound summed over all timesteps, where training draws one)."""
        raise NotImplementedError(f"{type(self).__name__} has no evaluation bound")

    def check_parts(self, x: Tensor, probe: Probe) -> None:
        """Check the model's own parts on ``x`` (two images as training feeds them) before the
        first step, reporting a broken one through ``probe`` with the plugin it came from
        (optional: a family's parts, such as a VAE's four)."""

    @classmethod
    def can(cls, method: str) -> bool:
        """Whether the model implements the optional ``method`` (``reconstruct``,
        ``log_importance_weights``, ``log_likelihood``, ``evaluation_bound``, ``loss``,
        ``training_step``)."""
        return getattr(cls, method) is not getattr(GenerativeModel, method)
