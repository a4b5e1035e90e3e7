"""Reporting a broken part of a model in one line that names the plugin it came from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from genmod.errors import PluginError, one_line


class Probe:
    """What a model's :meth:`~genmod.GenerativeModel.check_parts` reports problems through:
    each becomes a :class:`~genmod.PluginError` naming the plugin of the part, its role in the
    model and what is wrong."""

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
