"""User-facing errors: each names the file, row or key at fault and the fix.

The CLI turns any `MatchbenchError` into one message and exit code 2, never a traceback.

Internal: plugin authors import what they need of it from `harness.plugin`.
"""
from __future__ import annotations

import difflib


class MatchbenchError(Exception):
    """Bad input from the user (a file, a suite, a parameter); shown without a traceback."""


class ConfigError(MatchbenchError):
    """A suite or parameter problem; may carry several problems reported at once."""

    def __init__(self, problems: list[str] | str, source: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        if len(self.problems) == 1:
            msg = head + self.problems[0]
        else:
            msg = head + f"{len(self.problems)} problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(msg)


class UnknownPluginError(ConfigError):
    """An unknown plugin name; the message names the nearest valid one."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name = kind, name
        super().__init__(f"unknown {kind} {name!r}{did_you_mean(name, known)}")


class DuplicatePluginError(MatchbenchError):
    """Two plugins registered the same name for one kind: we refuse to let the last one win."""


class PluginSpecError(MatchbenchError):
    """A plugin's spec names a value outside the vocabulary (a task, score kind, loss contract ...) or
    contradicts itself; raised at start-up, naming the plugin and the nearest valid value."""


class DataError(MatchbenchError):
    """A malformed data file or a split that cannot be built from the data."""


def did_you_mean(name: str, known: list[str] | tuple[str, ...]) -> str:
    """' (did you mean 'x'?; valid: a, b, c)' for an error message."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    valid = ", ".join(sorted(known)) if known else "none registered"
    return f"{hint} (valid: {valid})"
