"""What every check shares: the plugin under test (`PluginCase`) and the `check` decorator that names a failure.

A check is a function of a `PluginCase` that raises `Failed` (via `require`) with what is wrong; the decorator
turns that, or any exception the plugin raises, into an `AssertionError` whose message starts with the check's
name and the plugin — "check_fits(model 'bpr'): ..." — and files the check under its kind, in order.

Internal: plugin authors run these checks through `harness.testing`; this module may change between versions.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, did_you_mean
from ..registry import Registry
from ..specs import KINDS, PluginSpec

CHECKS: dict[str, list[Callable[..., None]]] = {kind: [] for kind in KINDS}


class Failed(AssertionError):
    """A check found the plugin wrong (as opposed to the plugin raising)."""


def require(condition: Any, message: str) -> None:
    if not condition:
        raise Failed(message)


class PluginCase:
    """One plugin under test: its kind, name, registry and parameters, plus a memo the checks share (a fitted
    model, a built split), so running every check of a kind fits a model once per seed, not once per check."""

    def __init__(self, kind: str, name: str, registry: Registry | None = None, **params: Any):
        if kind not in KINDS:
            raise ConfigError(f"unknown plugin kind {kind!r}{did_you_mean(kind, KINDS)}")
        self.kind, self.name, self.params = kind, name, dict(params)
        self.registry = registry if registry is not None else Registry.load()
        self.spec: PluginSpec = self.registry.get(kind, name)
        self.memo: dict[Any, Any] = {}

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name!r}"

    def resolved(self) -> dict[str, Any]:
        """The parameters after the spec's schema (defaults filled in); a ConfigError when they are invalid."""
        resolved, problems = self.spec.schema.validate(self.params, self.label)
        if problems:
            raise ConfigError(problems)
        return resolved

    def create(self) -> Any:
        """A fresh instance, made as the runner makes it (validated through the registry's schema)."""
        return self.registry.create(self.kind, self.name, **self.params)

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]


def check(kind: str) -> Callable[[Callable[[PluginCase], None]], Callable[..., None]]:
    """File a check under `kind`. The checked function may be called with a PluginCase or, like
    `check_plugin`, with `(name, registry=None, **params)`."""

    def decorate(fn: Callable[[PluginCase], None]) -> Callable[..., None]:
        @functools.wraps(fn)
        def run(case: PluginCase | str, registry: Registry | None = None, **params: Any) -> None:
            if not isinstance(case, PluginCase):
                case = PluginCase(kind, case, registry, **params)
            elif case.kind != kind:
                raise ConfigError(f"{fn.__name__} checks {kind} plugins; it was given the {case.label}")
            prefix = f"{fn.__name__}({case.label}): "
            try:
                fn(case)
            except Failed as e:
                raise AssertionError(prefix + str(e)) from None
            except Exception as e:  # the plugin raised: report it under this check, keep its traceback
                raise AssertionError(prefix + f"raised {type(e).__name__}: {e}") from e

        run.kind = kind
        CHECKS[kind].append(run)
        return run

    return decorate
