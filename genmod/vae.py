"""A variational autoencoder composed of an encoder, decoder, prior and likelihood."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genmod.components import Decoder, Encoder, Likelihood, Prior
from genmod.elbo import ELBOTerms, kl_term, log_mean_exp


class VAE(nn.Module):
    """p(x, z) = p(z) p(x|z) with amortized posterior q(z|x).

    ``beta`` weights the KL term of the training objective (``beta = 1`` is the ELBO); the
    reported ELBO terms are always unweighted.
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        prior: Prior,
        likelihood: Likelihood,
        *,
        beta: float = 1.0,
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

    def elbo(self, x: Tensor) -> ELBOTerms:
        """The negative ELBO's terms per example, from one posterior sample each."""
        posterior = self.encoder(x)
        z = posterior.rsample()
        reconstruction = -self.likelihood(self.decoder(z)).log_prob(x)
        return ELBOTerms(reconstruction=reconstruction, kl=kl_term(posterior, self.prior.distribution(), z))

    def loss(self, x: Tensor) -> tuple[Tensor, ELBOTerms]:
        """The training objective averaged over the batch, and the ELBO terms behind it."""
        terms = self.elbo(x)
        return (terms.reconstruction + self.beta * terms.kl).mean(), terms

    def forward(self, x: Tensor) -> tuple[Tensor, ELBOTerms]:
        """The training objective; ``forward`` so that wrappers such as DDP see the call."""
        return self.loss(x)

    def log_importance_weights(self, x: Tensor, k: int, chunk_size: int = 500) -> Tensor:
        """``log p(x, z_i) - log q(z_i|x)`` for ``k`` posterior samples per example, shape ``(k, batch)``.

        Samples are drawn ``chunk_size`` at a time, so the decoder never sees more than
        ``chunk_size * batch`` latents at once.
        """
        posterior, prior = self.encoder(x), self.prior.distribution()
        chunks = []
        for start in range(0, k, chunk_size):
            z = posterior.rsample((min(chunk_size, k - start),))
            log_px_z = self.likelihood(self.decoder(z)).log_prob(x)
            chunks.append(log_px_z + prior.log_prob(z) - posterior.log_prob(z))
        return torch.cat(chunks)

    def log_likelihood(self, x: Tensor, k: int, chunk_size: int = 500) -> Tensor:
        """Importance-sampled ``log p(x) ≈ log (1/k) Σ p(x, z_i) / q(z_i|x)`` per example."""
        return log_mean_exp(self.log_importance_weights(x, k, chunk_size), dim=0)

    def sample(self, n: int) -> Tensor:
        """``n`` images: the likelihood's mean at latents drawn from the prior."""
        return self.likelihood.mean(self.decoder(self.prior.sample(n)))

    def decode(self, z: Tensor) -> Tensor:
        """The likelihood's mean image at given latents (sample grids with fixed noise)."""
        return self.likelihood.mean(self.decoder(z))

    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the posterior mean of each image."""
        return self.decode(self.encoder(x).mean)
