"""A fresh name -> spec table per run, built from the `matchbench` entry-point group.

Built-ins and third-party packages register the same way; a duplicate name fails at start-up.

Internal: plugin authors use `harness.plugin`; this module may change between versions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .errors import ConfigError, DuplicatePluginError, PluginSpecError, UnknownPluginError
from .specs import KINDS, SPEC_TYPES, PluginSpec

ENTRY_POINT_GROUP = "matchbench"
_HOOKS = {kind: f"register_{kind}es" if kind.endswith("s") else f"register_{kind}s" for kind in KINDS}


def plugin_manager(extra: Iterable[Any] = (), entry_points: bool = True) -> pluggy.PluginManager:
    """A new plugin manager: our hook specs, the entry-point group, then `extra` plugins."""
    pm = pluggy.PluginManager("matchbench")
    pm.add_hookspecs(hookspecs)
    if entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in extra:
        pm.register(plugin)
    pm.check_pending()
    return pm


@dataclass
class Registry:
    """All specs by kind and name, collected once from a plugin manager."""

    specs: dict[str, dict[str, PluginSpec]] = field(default_factory=dict)
    origin: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def load(cls, extra: Iterable[Any] = (), entry_points: bool = True) -> "Registry":
        return cls.from_manager(plugin_manager(extra, entry_points))

    @classmethod
    def from_manager(cls, pm: pluggy.PluginManager) -> "Registry":
        reg = cls(specs={k: {} for k in KINDS})
        for kind, hook_name in _HOOKS.items():
            hook = getattr(pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)

                def register(spec: PluginSpec, _kind=kind, _origin=plugin_name) -> None:
                    reg._add(_kind, spec, _origin)

                impl.function(register)
        return reg

    def _add(self, kind: str, spec: PluginSpec, origin: str) -> None:
        want = SPEC_TYPES[kind]
        if not isinstance(spec, want):
            raise PluginSpecError(f"plugin {origin} registered {spec!r} through {_HOOKS[kind]}; expected a "
                                  f"{want.__name__}")
        problems = spec.problems()
        if problems:
            raise PluginSpecError(f"{kind} plugin {spec.name!r} (registered by {origin}): " + "; ".join(problems)
                                  + "; fix its spec")
        if spec.name in self.specs[kind]:
            first = self.origin[(kind, spec.name)]
            raise DuplicatePluginError(
                f"{kind} {spec.name!r} is registered twice: by {first} and by {origin}; "
                "uninstall one of them or rename the plugin")
        self.specs[kind][spec.name] = spec
        self.origin[(kind, spec.name)] = origin

    def names(self, kind: str) -> list[str]:
        return sorted(self.specs[kind])

    def get(self, kind: str, name: str) -> PluginSpec:
        if kind not in self.specs:
            raise ConfigError(f"unknown plugin kind {kind!r} (valid: {', '.join(KINDS)})")
        try:
            return self.specs[kind][name]
        except KeyError:
            raise UnknownPluginError(kind, name, self.names(kind)) from None

    def create(self, kind: str, name: str, **params: Any) -> Any:
        """Validate `params` against the spec's schema and call its factory."""
        spec = self.get(kind, name)
        resolved, problems = spec.schema.validate(params, f"{kind} {name!r}")
        if problems:
            raise ConfigError(problems)
        return spec.factory(**resolved)
