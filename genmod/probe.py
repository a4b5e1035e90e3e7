"""Checking a freshly built model against the interfaces before training starts.

A component that breaks its contract (wrong return type, wrong shape, a crash) is caught on a
two-image probe batch and reported with the plugin it came from, instead of failing deep inside
the training loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from genmod.components import Likelihood
from genmod.errors import PluginError, one_line
from genmod.model import Bound, GenerativeModel
from genmod.vae import VAE


class _Probe:
    def __init__(self, model_name: str, origin: Callable[[nn.Module], str]) -> None:
        self.model_name = model_name
        self.origin = origin

    def fail(self, part: nn.Module, role: str, problem: str) -> PluginError:
        return PluginError(
            f"plugin '{self.origin(part)}': {role} {type(part).__name__} of model '{self.model_name}' {problem}"
        )

    def expect(self, ok: bool, part: nn.Module, role: str, problem: str) -> None:
        if not ok:
            raise self.fail(part, role, problem)

    def call(self, part: nn.Module, role: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - any crash in plugin code is reported as such
            raise self.fail(part, role, f"failed on a probe batch: {one_line(exc)}") from None


@torch.no_grad()
def probe_model(
    model: GenerativeModel, x: Tensor, model_name: str, origin: Callable[[nn.Module], str]
) -> None:
    """Run ``x`` (a couple of real images) through the model, and through every part of a
    VAE, and check what comes back. ``origin(part)`` names the plugin a part came from."""
    p = _Probe(model_name, origin)
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        if isinstance(model, VAE):
            _probe_vae_parts(p, model, x)
        _probe_contract(p, model, x)


def _probe_contract(p: _Probe, model: GenerativeModel, x: Tensor) -> None:
    if model.can("loss"):
        _probe_loss(p, model, x)
    samples = p.call(model, "model", model.sample, 2)
    p.expect(
        isinstance(samples, Tensor) and samples.shape == (2, *x.shape[1:]),
        model,
        "model",
        f"sample(2) returned {tuple(getattr(samples, 'shape', ()))}; expected {(2, *x.shape[1:])}",
    )


def _probe_loss(p: _Probe, model: GenerativeModel, x: Tensor) -> None:
    n = len(x)
    result = p.call(model, "model", model.loss, x)
    ok = isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], Bound)
    p.expect(ok, model, "model", "loss(x) did not return (objective, genmod.Bound)")
    objective, bound = result
    p.expect(
        isinstance(objective, Tensor) and objective.dim() == 0,
        model,
        "model",
        "loss(x) returned an objective that is not a scalar tensor",
    )
    if model.bound is None:
        p.expect(
            bound.value is None,
            model,
            "model",
            "returned a bound's value while its class declares bound = None (no bound): declare what it is",
        )
    else:
        p.expect(
            bound.value is not None and bound.value.shape == (n,),
            model,
            "model",
            f"bound has shape {tuple(getattr(bound.value, 'shape', ()))}; expected ({n},)"
            + (f" (its class declares bound = {model.bound!r})" if bound.value is None else ""),
        )
    p.expect(
        tuple(bound.terms) == model.terms,
        model,
        "model",
        f"bound's terms are {tuple(bound.terms)}; its class declares terms = {model.terms}",
    )
    for name, term in bound.terms.items():
        p.expect(
            term.shape == (n,),
            model,
            "model",
            f"term '{name}' has shape {tuple(term.shape)}; expected ({n},)",
        )


def _probe_vae_parts(p: _Probe, model: VAE, x: Tensor) -> None:
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
