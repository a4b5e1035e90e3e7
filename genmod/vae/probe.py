"""The VAE family's part of the probe: each of a VAE's four parts checked on its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor
from torch.distributions import Distribution

from genmod.vae.components import Likelihood

if TYPE_CHECKING:
    from genmod.checks import Probe
    from genmod.vae.model import VAE


def check_vae_parts(p: Probe, model: VAE, x: Tensor) -> None:
    n = len(x)
    q = p.call(model.encoder, "encoder", model.encoder, x)
    p.expect(
        isinstance(q, Distribution),
        model.encoder,
        "encoder",
        f"returned a {type(q).__name__}, not a torch.distributions.Distribution",
    )
    p.expect(
        q.batch_shape == (n,) and len(q.event_shape) == 1,
        model.encoder,
        "encoder",
        f"returned batch shape {tuple(q.batch_shape)} and event shape {tuple(q.event_shape)}; "
        f"expected ({n},) and (latent_dim,)",
    )
    z = p.call(model.encoder, "encoder", q.rsample)
    params = p.call(model.decoder, "decoder", model.decoder, z)
    wanted = (n, *model.likelihood.params_shape(tuple(x.shape[1:])))
    p.expect(
        isinstance(params, Tensor) and params.shape == wanted,
        model.decoder,
        "decoder",
        f"returned {tuple(getattr(params, 'shape', ())) or type(params).__name__}; expected a tensor "
        + (
            f"of the data's shape {wanted}"
            if wanted == x.shape
            else f"of the likelihood's parameters {wanted}"
        ),
    )
    if type(model.likelihood).log_prob is Likelihood.log_prob:  # scored through forward's distribution
        px = p.call(model.likelihood, "likelihood", model.likelihood, params)
        p.expect(
            isinstance(px, Distribution),
            model.likelihood,
            "likelihood",
            f"returned a {type(px).__name__}, not a torch.distributions.Distribution",
        )
    log_px = p.call(model.likelihood, "likelihood", model.likelihood.log_prob, params, x)
    p.expect(
        log_px.shape == (n,),
        model.likelihood,
        "likelihood",
        f"log_prob has shape {tuple(log_px.shape)}; expected ({n},), one value per image "
        "(sum over the data dimensions, e.g. with Independent)",
    )
    mean = p.call(model.likelihood, "likelihood", model.likelihood.mean, params)
    p.expect(
        mean.shape == x.shape,
        model.likelihood,
        "likelihood",
        f"mean has shape {tuple(mean.shape)}; expected the data's {tuple(x.shape)}",
    )
    samples = p.call(model.prior, "prior", model.prior.sample, 3)
    p.expect(
        samples.shape == (3, *q.event_shape),
        model.prior,
        "prior",
        f"sample(3) has shape {tuple(samples.shape)}; expected {(3, *q.event_shape)}",
    )
    log_pz = p.call(model.prior, "prior", model.prior.log_prob, z)
    p.expect(
        log_pz.shape == (n,),
        model.prior,
        "prior",
        f"log_prob has shape {tuple(log_pz.shape)}; expected ({n},)",
    )
