"""Checking a freshly built model against the contract before training starts.

A model or part that breaks its contract (wrong return type, wrong shape, a crash) is caught
on a two-image probe batch and reported with the plugin it came from, instead of failing deep
inside the training loop. A family checks its own parts first (``check_parts``: the VAE
family's encoder, decoder, prior and likelihood).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from genmod.checks import Probe
from genmod.model import Bound, GenerativeModel


@torch.no_grad()
def probe_model(
    model: GenerativeModel, x: Tensor, model_name: str, origin: Callable[[nn.Module], str]
) -> None:
    """Run ``x`` (a couple of images as training feeds them) through the model's parts (its
    ``check_parts``) and the model, and check what comes back. ``origin(part)`` names the
    plugin a part came from."""
    p = Probe(model_name, origin)
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        model.check_parts(x, p)
        _probe_contract(p, model, x)


def _probe_contract(p: Probe, model: GenerativeModel, x: Tensor) -> None:
    if model.can("loss"):
        _probe_loss(p, model, x)
    samples = p.call(model, "model", model.sample, 2)
    p.expect(
        isinstance(samples, Tensor) and samples.shape == (2, *x.shape[1:]),
        model,
        "model",
        f"sample(2) returned {tuple(getattr(samples, 'shape', ()))}; expected {(2, *x.shape[1:])}",
    )


def _probe_loss(p: Probe, model: GenerativeModel, x: Tensor) -> None:
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
