"""Typed parameter schemas for plugins: types, defaults, ranges, choices and one-line help.

A schema rejects unknown keys (naming the nearest valid key), coerces ints to floats where a
float is wanted, and documents itself for `matchbench list`.

Internal: plugin authors import what they need of it from `harness.plugin`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import did_you_mean

_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict, "any": object}


@dataclass(frozen=True)
class Param:
    """One parameter: `type` is one of int, float, str, bool, list, dict, any."""

    name: str
    type: str
    default: Any = None
    help: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    nullable: bool = False

    def describe(self) -> str:
        bits = [self.type]
        if self.choices:
            bits.append("one of " + "|".join(map(str, self.choices)))
        if self.low is not None or self.high is not None:
            lo = "-inf" if self.low is None else self.low
            hi = "inf" if self.high is None else self.high
            bits.append(f"in [{lo}, {hi}]")
        return f"{self.name} ({', '.join(bits)}; default {self.default!r}): {self.help}"

    def check(self, value: Any) -> tuple[Any, str | None]:
        """Return (coerced value, problem or None)."""
        if value is None:
            if self.nullable or self.default is None:
                return None, None
            return value, f"{self.name} may not be null (expected {self.type})"
        want = _TYPES[self.type]
        if self.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.type == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
        if self.type != "any":
            ok = isinstance(value, want) and not (self.type in ("int", "float") and isinstance(value, bool))
            if not ok:
                return value, f"{self.name} must be {self.type}, got {value!r} ({type(value).__name__})"
        if self.choices is not None and value not in self.choices:
            return value, f"{self.name}={value!r} is not one of {list(self.choices)}{_near(value, self.choices)}"
        if self.low is not None and value < self.low:
            return value, f"{self.name}={value!r} is below its minimum {self.low}"
        if self.high is not None and value > self.high:
            return value, f"{self.name}={value!r} is above its maximum {self.high}"
        return value, None


def _near(value, choices) -> str:
    import difflib

    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class Schema:
    params: tuple[Param, ...] = field(default_factory=tuple)

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def validate(self, values: dict[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
        """Fill defaults, coerce types; return (resolved, problems) — problems prefixed by `where`."""
        problems: list[str] = []
        by_name = {p.name: p for p in self.params}
        out = self.defaults()
        for key, value in (values or {}).items():
            if key not in by_name:
                problems.append(f"{where}: unknown parameter {key!r}{did_you_mean(key, self.names())}")
                continue
            value, problem = by_name[key].check(value)
            if problem:
                problems.append(f"{where}: {problem}")
            out[key] = value
        return out, problems
