"""The four interfaces a variational autoencoder is composed of.

Each is an abstract :class:`torch.nn.Module`: a subclass that does not implement an abstract
method cannot be instantiated, and the error names the method. Shapes follow
``torch.distributions`` conventions: ``*batch`` is any number of leading sample/batch dims.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution


class _Interface(nn.Module, metaclass=abc.ABCMeta):
    """Makes a missing abstract method fail at construction with a readable message."""

    def __new__(cls, *args: object, **kwargs: object) -> _Interface:
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            base = next(b.__name__ for b in cls.__mro__ if b in _INTERFACES)
            raise TypeError(
                f"{cls.__name__} cannot be instantiated: it subclasses genmod.{base} but does "
                f"not implement {', '.join(m + '()' for m in missing)}"
            )
        return super().__new__(cls)


class Encoder(_Interface):
    """Maps data ``x`` of shape ``(batch, *data_shape)`` to the posterior q(z|x).

    ``forward`` returns a :class:`~torch.distributions.Distribution` with batch shape
    ``(batch,)`` and event shape ``(latent_dim,)`` that supports ``rsample`` (for example
    ``Independent(Normal(mu, sigma), 1)``).
    """

    @abc.abstractmethod
    def forward(self, x: Tensor) -> Distribution:
        """Return q(z|x)."""


class Decoder(_Interface):
    """Maps latents ``z`` of shape ``(*batch, latent_dim)`` to the parameters of p(x|z).

    The output has shape ``(*batch, *params_shape)`` (``ComponentContext.params_shape``: the
    data shape for most likelihoods) and is interpreted by a :class:`Likelihood` (for
    example Bernoulli logits).
    """

    @abc.abstractmethod
    def forward(self, z: Tensor) -> Tensor:
        """Return the parameters of p(x|z)."""


class Prior(_Interface):
    """The prior p(z) over latents of size ``latent_dim``; may hold learnable parameters.

    ``distribution`` returns p(z) as a Distribution with event shape ``(latent_dim,)``. It is
    used for an analytic KL term whenever ``torch.distributions.kl_divergence`` knows the pair
    (posterior, prior); otherwise the model falls back to a Monte Carlo estimate.
    """

    @abc.abstractmethod
    def distribution(self) -> Distribution:
        """Return p(z)."""

    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density of ``z`` (shape ``(*batch, latent_dim)``), shape ``(*batch,)``."""
        return self.distribution().log_prob(z)

    def sample(self, n: int) -> Tensor:
        """Draw ``n`` latents, shape ``(n, latent_dim)``."""
        return self.distribution().sample((n,))


class Likelihood(_Interface):
    """Turns decoder output into the observation model p(x|z).

    ``forward`` returns a Distribution whose event shape is the data shape, so that
    ``log_prob(x)`` is summed over the data dimensions and has one value per example.
    """

    levels: ClassVar[int | None] = None
    """The values a pixel takes when the likelihood is discrete over 8-bit images (256):
    genmod then also reports bounds in bits per dimension. ``None`` for densities and for
    likelihoods of binarized images."""

    def params_shape(self, data_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The decoder output this likelihood reads per example: the data shape, unless it
        needs several parameters per pixel (a mixture's weights, means and scales)."""
        return data_shape

    @abc.abstractmethod
    def forward(self, params: Tensor) -> Distribution:
        """Return p(x|z) given decoder output ``params``."""

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """``log p(x|z)`` per example, shape ``params.shape[:-data_ndim]``, in float32.

        The default scores ``x`` under :meth:`forward`'s distribution; a likelihood may
        override it with a fused formula (the hot loop of training and ``genmod eval``).
        Parameters computed in bfloat16 (``train.precision``) are scored in float32.
        """
        scores: Tensor = self(params.float()).log_prob(x)
        return scores

    def mean(self, params: Tensor) -> Tensor:
        """The expected image under p(x|z), used for sample grids and reconstructions."""
        mean: Tensor = self(params.float()).mean
        return mean


_INTERFACES = (Encoder, Decoder, Prior, Likelihood)


def diagonal_gaussian(mean: Tensor, log_var: Tensor) -> Distribution:
    """q(z|x) as a diagonal Gaussian over the last dimension, the usual encoder output."""
    # Argument validation costs a sync-free but measurable check every step; shapes are ours.
    # float32 whatever the layers ran in: the KL and log-densities need its precision.
    mean, log_var = mean.float(), log_var.float()
    return torch.distributions.Independent(
        torch.distributions.Normal(mean, torch.exp(0.5 * log_var), validate_args=False), 1
    )
