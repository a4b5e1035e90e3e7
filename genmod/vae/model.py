"""A variational autoencoder composed of an encoder, decoder, prior and likelihood."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution, TransformedDistribution

from genmod.evaluation import log_mean_exp
from genmod.model import Bound, GenerativeModel
from genmod.vae.components import Decoder, Encoder, Likelihood, Prior
from genmod.vae.elbo import ELBOTerms, kl_term

if TYPE_CHECKING:
    from genmod.checks import Probe


class VAE(GenerativeModel):
    """p(x, z) = p(z) p(x|z) with amortized posterior q(z|x).

    The training objective is ``reconstruction + w * max(KL, free_bits)`` averaged over the
    batch, where ``w`` is ``beta`` ramped up linearly from 0 over the first
    ``kl_warmup_epochs`` epochs (KL warm-up) and the floor applies to the batch-mean KL (free
    bits, for this model's one latent group). The reported bound is always the unweighted
    negative ELBO.
    """

    terms: ClassVar[tuple[str, ...]] = ("reconstruction", "kl")
    bound: ClassVar[str | None] = "-ELBO"

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        prior: Prior,
        likelihood: Likelihood,
        *,
        beta: float = 1.0,
        kl_warmup_epochs: int = 0,
        free_bits: float = 0.0,
    ) -> None:
        super().__init__()
        for part, cls in ((encoder, Encoder), (decoder, Decoder), (prior, Prior), (likelihood, Likelihood)):
            if not isinstance(part, cls):
                raise TypeError(f"VAE expects a genmod.{cls.__name__}, got {type(part).__name__}")
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.likelihood = likelihood
        self.beta = beta
        self.kl_warmup_epochs = kl_warmup_epochs
        self.free_bits = free_bits

    def check_parts(self, x: Tensor, probe: Probe) -> None:
        """Each of the four parts on its own, so that a broken one is named (genmod.vae.probe)."""
        from genmod.vae.probe import check_vae_parts  # it reads this class: imported on use

        check_vae_parts(probe, self, x)

    def elbo(self, x: Tensor) -> ELBOTerms:
        """The negative ELBO's terms per example, from one posterior sample each."""
        posterior = self.encoder(x)
        z = posterior.rsample()
        reconstruction = -self.likelihood.log_prob(self.decoder(z), x)
        return ELBOTerms(reconstruction=reconstruction, kl=kl_term(posterior, self.prior.distribution(), z))

    def kl_weight(self) -> float:
        """``beta``, ramped up from 0 during the warm-up epochs (read from :attr:`progress`)."""
        return self.beta * self.progress.ramp(self.kl_warmup_epochs)

    def loss(self, x: Tensor) -> tuple[Tensor, Bound]:
        terms = self.elbo(x)
        kl = terms.kl.mean()
        if self.free_bits:
            kl = torch.clamp(kl, min=self.free_bits)
        objective = terms.reconstruction.mean() + self.kl_weight() * kl
        bound = Bound(terms.negative_elbo, {"reconstruction": terms.reconstruction, "kl": terms.kl})
        return objective, bound

    def log_importance_weights(self, x: Tensor, k: int, chunk_size: int = 500) -> Tensor:
        """``log p(x, z_i) - log q(z_i|x)`` for ``k`` posterior samples per example, shape ``(k, batch)``.

        Samples are drawn ``chunk_size`` at a time, so the decoder never sees more than
        ``chunk_size * batch`` latents at once.
        """
        posterior, prior = self.encoder(x), self.prior.distribution()
        chunks = []
        for start in range(0, k, chunk_size):
            z = posterior.rsample((min(chunk_size, k - start),))
            log_px_z = self.likelihood.log_prob(self.decoder(z), x)
            chunks.append(log_px_z + prior.log_prob(z) - posterior.log_prob(z))
        return torch.cat(chunks)

    def log_likelihood(self, x: Tensor, k: int = 5000, chunk_size: int = 500) -> Tensor:
        """Importance-sampled ``log p(x) ≈ log (1/k) Σ p(x, z_i) / q(z_i|x)`` per example: an
        estimate, not exact (``genmod eval`` uses :meth:`log_importance_weights` and says so)."""
        return log_mean_exp(self.log_importance_weights(x, k, chunk_size), dim=0)

    def sample(self, n: int) -> Tensor:
        """``n`` images: the likelihood's mean at latents drawn from the prior."""
        return self.likelihood.mean(self.decoder(self.prior.sample(n)))

    def decode(self, z: Tensor) -> Tensor:
        """The likelihood's mean image at given latents (sample grids with fixed noise)."""
        return self.likelihood.mean(self.decoder(z))

    def manifold(self, size: int = 20) -> Tensor:
        """``size`` x ``size`` images decoded over a 2-D latent space, at evenly spaced quantiles
        of N(0, 1) as in Kingma & Welling (2014), figure 4; ``ValueError`` for other latent sizes."""
        dims = self.prior.distribution().event_shape[-1]
        if dims != 2:
            raise ValueError(f"it has {dims} latents, not 2: train one with --set model.latent_dim=2")
        axis = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, size))
        grid = torch.stack(torch.meshgrid(axis, axis.flip(0), indexing="xy"), dim=-1).reshape(-1, 2)
        return self.decode(grid.to(next(self.parameters()).device))

    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the posterior's center for each image: its mean, or for a flow posterior
        (whose mean has no closed form) its base distribution's mean pushed through the flow."""
        return self.decode(_center(self.encoder(x)))


def _center(posterior: Distribution) -> Tensor:
    try:
        return posterior.mean
    except NotImplementedError:
        if not isinstance(posterior, TransformedDistribution):
            raise
        z = _center(posterior.base_dist)
        for transform in posterior.transforms:
            z = transform(z)
        return z
