"""Typed parameter schemas for plugins: types, defaults, ranges, choices and one-line help.

A schema rejects unknown keys (naming the nearest valid key), coerces ints to floats where a
float is wanted, and documents itself for `matchbench list`.

Internal: plugin authors import what they need of it from `harness.plugin`.
"""
from __future__ import annotations

import math
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
    late: bool = False
    """added after runs were recorded: while all of a plugin's late parameters are at their defaults they are left out
    of a cell's configuration and config hash"""

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
        if self.type in ("int", "float") and isinstance(value, float) and not math.isfinite(value):
            return value, (f"{self.name} must be a finite number, got {value!r}; NaN and infinity are not values "
                           "a parameter can take")
        if self.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.type == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
        if self.type != "any":
            ok = isinstance(value, want) and not (self.type in ("int", "float") and isinstance(value, bool))
            if not ok:
                shown = f"{self.name} must be {self.type}, got {value!r} ({type(value).__name__})"
                return value, shown + text_hint(self.type, value)
        if self.choices is not None and value not in self.choices:
            return value, f"{self.name}={value!r} is not one of {list(self.choices)}{_near(value, self.choices)}"
        if self.low is not None and value < self.low:
            return value, f"{self.name}={value!r} is below its minimum {self.low}"
        if self.high is not None and value > self.high:
            return value, f"{self.name}={value!r} is above its maximum {self.high}"
        return value, None


def text_hint(want: str, value: Any) -> str:
    """Why a text value that looks like a number or a boolean is text, and how to write it.

    YAML 1.1 (what PyYAML reads) takes an exponent without a sign or without a dot (1e12, 1.0e12) as text, not a
    number; we explain that rather than convert, so that a value means the same in every YAML reader and a quoted
    "1e12" stays the text its author quoted."""
    if not isinstance(value, str):
        return ""
    text = value.strip()
    if want in ("int", "float"):
        try:
            finite = math.isfinite(float(text))
        except ValueError:
            return ""
        if not finite:
            return ""
        mantissa, _, exponent = text.lower().partition("e")
        if exponent:
            sign = exponent if exponent[0] in "+-" else "+" + exponent
            fixed = (mantissa if "." in mantissa else mantissa + ".0") + "e" + sign
            return f"; YAML 1.1 reads {text} as text (an exponent needs a dot and a sign): write {fixed}"
        return f"; write {text} without quotes"
    if want == "bool" and text.lower() in ("true", "false", "yes", "no", "on", "off"):
        word = "true" if text.lower() in ("true", "yes", "on") else "false"
        return f"; write {word} without quotes (quoted text is not a boolean)"
    return ""


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
