"""The plugin system: every hook documented and exercised, duplicates refused, misspellings caught."""
import inspect

import pluggy
import pytest

from harness import hookimpl, hookspecs
from harness.errors import DuplicatePluginError, UnknownPluginError
from harness.registry import Registry
from harness.specs import SPEC_TYPES

HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]


def test_every_hook_is_documented_and_takes_register():
    assert len(HOOKS) == len(SPEC_TYPES)
    for name in HOOKS:
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and fn.__doc__.strip(), name
        assert list(inspect.signature(fn).parameters) == ["register"], name


def _spec(kind, name):
    cls = SPEC_TYPES[kind]
    return cls(name=name, factory=lambda **kw: ("made", kw), description=f"a test {kind}")


@pytest.mark.parametrize("kind", list(SPEC_TYPES))
def test_each_hook_registers_on_a_fresh_manager(kind):
    hook = f"register_{kind}es" if kind.endswith("s") else f"register_{kind}s"
    assert hook in HOOKS

    class Plugin:
        pass

    def impl(self, register):
        register(_spec(kind, f"test_{kind}"))

    setattr(Plugin, hook, hookimpl(impl))
    reg = Registry.load(extra=[Plugin()], entry_points=False)
    assert reg.names(kind) == [f"test_{kind}"]
    assert reg.create(kind, f"test_{kind}") == ("made", {})


def test_duplicate_names_fail_at_start_up():
    class A:
        @hookimpl
        def register_models(self, register):
            register(_spec("model", "item_pop"))

    with pytest.raises(DuplicatePluginError, match="'item_pop' is registered twice"):
        Registry.load(extra=[A()])


def test_misspelled_hook_fails_loudly():
    class Typo:
        @hookimpl
        def register_model(self, register):  # missing the s
            pass

    with pytest.raises(pluggy.PluginValidationError):
        Registry.load(extra=[Typo()], entry_points=False)


def test_unknown_name_names_the_nearest():
    reg = Registry.load()
    with pytest.raises(UnknownPluginError, match="did you mean 'item_pop'"):
        reg.get("model", "itempop")


def test_builtins_register_through_the_entry_point_group():
    import importlib.metadata as md

    eps = {ep.value for ep in md.entry_points(group="matchbench")}
    assert {"plugins.models.bpr", "plugins.models.popularity", "plugins.metrics.ranking"} <= eps
    # and the harness itself never imports the built-ins
    import pathlib
    import re

    for path in pathlib.Path("harness").glob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+plugins", path.read_text(), re.M), path
