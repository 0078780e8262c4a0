"""Parameter defaults in one place: a spec's `Param` default is what runs (suites resolve every parameter
through the schema and call `factory(**resolved)`), so a constructor that restates a default must restate
the same value, accept every Param, and need nothing that is not a Param."""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from harness.data import filter_events
from harness.registry import Registry
from harness.specs import KINDS

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _forwards(fn: Callable, fixed: dict[str, Any]) -> list[Callable]:
    """Where a factory sends its **kwargs when that is not a base class's __init__ (read from its body)."""
    from plugins.datasets import synthetic
    from plugins.models import sequence

    key = f"{fn.__module__}.{fn.__qualname__}"
    if key == "plugins.models.sequence.IntensityRecommender":
        return [sequence.PRIORS[fixed["prior"]][0]]  # the prior's keys go to the prior class
    if key == "plugins.datasets.synthetic.make_world_dataset":
        return [synthetic.make_world]
    if key.startswith("plugins.datasets.") and "filters" in inspect.signature(fn).parameters:
        return [filter_events]  # the common filters end in harness.data.filter_events
    return []


def _next_init(cls: type) -> type | None:
    """The base class whose __init__ a `super().__init__(**kw)` reaches (None: object's, which takes nothing)."""
    for base in cls.__mro__[1:]:
        if "__init__" in vars(base):
            return None if base is object else base
    return None


def _receivers(factory: Callable) -> list[tuple[str, inspect.Signature, frozenset, bool, bool]]:
    """Each callable a factory's keyword arguments can reach: (label, signature, names bound before it,
    whether its required parameters must be Params, whether its **kwargs go where we cannot see). A
    parameter is taken by the first callable that names it; only the rest travels on through **kwargs."""
    fixed: dict[str, Any] = {}
    fn = factory
    while isinstance(fn, functools.partial):
        fixed.update(fn.keywords)
        fn = fn.func
    out = []
    todo: list[tuple[Callable, frozenset, bool]] = [(fn, frozenset(fixed), True)]
    while todo:
        fn, taken, own = todo.pop(0)
        is_class = isinstance(fn, type)
        if is_class:  # the class whose own __init__ runs (a subclass may inherit it)
            fn = next(c for c in fn.__mro__ if "__init__" in vars(c))
        sig = inspect.signature(fn.__init__ if is_class else fn)
        params = [] if fn is object else [p for p in sig.parameters.values() if p.name != "self"]
        label = getattr(fn, "__qualname__", repr(fn)).split("<locals>.")[-1] + (".__init__" if is_class else "")
        targets = []
        if any(p.kind is p.VAR_KEYWORD for p in params):
            now = taken | {p.name for p in params if p.kind in _NAMED}
            base = _next_init(fn) if is_class else None
            targets = ([(base, now, own)] if base is not None else []) + [
                (target, now, False) for target in _forwards(fn, fixed)]
        out.append((label, sig.replace(parameters=params), taken, own, bool(params) and not targets
                    and params[-1].kind is params[-1].VAR_KEYWORD))
        todo.extend(targets)
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal by value (tuples and lists alike, 1 == 1.0), but a bool is not a number."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return a == b


def _problems(kind: str, name: str, spec) -> list[str]:
    receivers = _receivers(spec.factory)
    where = f"{kind} {name!r}"
    problems = []
    param_names = {p.name for p in spec.params}
    for p in spec.params:
        takers = [(label, sig.parameters[p.name]) for label, sig, taken, _, _ in receivers
                  if p.name in sig.parameters and p.name not in taken and sig.parameters[p.name].kind in _NAMED]
        if not takers:
            if not any(r[4] for r in receivers):
                problems.append(f"{where}: Param {p.name!r} is not accepted by {receivers[0][0]}")
            continue
        label, arg = takers[0]
        if arg.default is not arg.empty and not _same(p.default, arg.default):
            problems.append(f"{where}: {p.name}: Param default {p.default!r}, {label} default {arg.default!r}")
    for label, sig, taken, own, _ in receivers:
        for arg in sig.parameters.values():
            if (own and arg.kind in _NAMED and arg.default is arg.empty and arg.name not in taken
                    and arg.name not in param_names):
                problems.append(f"{where}: {label} requires {arg.name!r}, which is not a Param")
    return problems


def test_param_defaults_match_the_constructors():
    reg = Registry.load()
    problems = [msg for kind in KINDS for name in reg.names(kind) for msg in _problems(kind, name, reg.get(kind, name))]
    assert not problems, ("the Param default is what runs; make the constructor say the same (or drop its "
                          "restatement):\n  " + "\n  ".join(problems))


def test_the_check_sees_a_drifted_default():
    """The check itself: a constructor default that differs, a Param it does not take, a requirement that is
    not a Param, and the same reached through a partial and a base class's **kw."""
    from harness.schema import Param
    from harness.specs import ModelSpec

    class Base:
        def __init__(self, lr=0.1, need=None):
            pass

    class Child(Base):
        def __init__(self, dim, dropout=0.3, **kw):
            super().__init__(**kw)

    spec = ModelSpec(name="m", factory=functools.partial(Child, dim=4), description="a test model",
                     params=(Param("dropout", "float", 0.5), Param("lr", "float", 0.01), Param("extra", "int", 1)))
    found = _problems("model", "m", spec)
    assert any("dropout: Param default 0.5" in m and "0.3" in m for m in found), found
    assert any("lr: Param default 0.01" in m and "0.1" in m for m in found), found
    assert any("'extra' is not accepted" in m for m in found), found
    assert len(found) == 3, found

    class Needs:
        def __init__(self, path, size=(1, 2)):
            pass

    spec = ModelSpec(name="n", factory=Needs, description="a test model", params=(Param("size", "list", [1, 2]),))
    assert _problems("model", "n", spec) == ["model 'n': Needs.__init__ requires 'path', which is not a Param"]
