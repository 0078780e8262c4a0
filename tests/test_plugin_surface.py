"""The one public surface: plugins import `harness.plugin` only, never another family's module or a private name,
and every spec names only values from the typed vocabularies (checked at registration)."""
import ast
import pathlib

import pytest

import harness.plugin
from harness import hookimpl
from harness.errors import PluginSpecError
from harness.registry import Registry
from harness.specs import LossSpec, ModelSpec, SplitSpec

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _imports(path: pathlib.Path):
    """(line, module, names, level) of every import in a file, nested ones included."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or "", [a.name for a in node.names], node.level
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, [], 0


def surface_violations(path: pathlib.Path, family: str | None) -> list[str]:
    """What a plugin module of `family` (plugins/<family>/...; None for a third-party package) imports that it
    may not."""
    out = []
    for line, module, names, level in _imports(path):
        where = f"{path.relative_to(ROOT)}:{line}"
        if level == 0 and (module == "harness" or module.startswith("harness.")) and module != "harness.plugin":
            out.append(f"{where}: imports {module}; plugins import harness.plugin only")
        if level == 0 and module.startswith("plugins"):
            parts = module.split(".")
            if family is None or len(parts) < 2 or parts[1] != family:
                out.append(f"{where}: imports {module}, another plugin family's module")
        private = [n for n in names if n.startswith("_") and n != "__future__"]
        if private and module != "__future__":
            out.append(f"{where}: imports private name(s) {private} from {module or '.'}")
    return out


def test_builtin_plugins_use_only_the_public_surface():
    problems = []
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        rel = path.relative_to(ROOT / "plugins").parts
        problems += surface_violations(path, rel[0] if len(rel) > 1 else None)
    assert not problems, "\n".join(problems)


def test_the_surface_check_can_fail(tmp_path):
    bad = ROOT / "plugins" / "models" / "_surface_probe.py"
    bad.write_text("from harness.ranking import topk_rows\nfrom plugins.metrics.ranking import ndcg\n"
                   "from .ctr_models import _private\n")
    try:
        found = surface_violations(bad, "models")
    finally:
        bad.unlink()
    assert len(found) == 3, found


def test_every_public_name_exists_and_nothing_private_is_exported():
    for name in harness.plugin.__all__:
        assert hasattr(harness.plugin, name), name
        assert not name.startswith("_"), name
    assert len(set(harness.plugin.__all__)) == len(harness.plugin.__all__)


def _registry_with(spec_kind: str, spec) -> Registry:
    hook = {"model": "register_models", "loss": "register_losses", "split": "register_splits"}[spec_kind]

    class Plugin:
        pass

    setattr(Plugin, hook, hookimpl(lambda self, register: register(spec)))
    return Registry.load(extra=[Plugin()], entry_points=False)


@pytest.mark.parametrize("kind, spec, message", [
    ("model", ModelSpec(name="m", factory=object, description="x", tasks=("itemrec", "itmerec")),
     "tasks: unknown value 'itmerec'; did you mean 'itemrec'?"),
    ("model", ModelSpec(name="m", factory=object, description="x", score_kind="probabilty"),
     "score_kind: unknown value 'probabilty'; did you mean 'probability'?"),
    ("model", ModelSpec(name="m", factory=object, description="x", contracts=("pairwise", "in-batch"),
                        default_loss="bpr"), "contracts: unknown value 'in-batch'; did you mean 'in_batch'?"),
    ("model", ModelSpec(name="m", factory=object, description="x", requires=("calibraton",)),
     "requires: unknown value 'calibraton'; did you mean 'calibration'?"),
    ("model", ModelSpec(name="m", factory=object, description="x", tasks=("ctr",)),
     "serves ctr but does not offer 'ctr_probabilities'"),
    ("loss", LossSpec(name="l", factory=object, description="x", contract="pairwse"),
     "contract: unknown value 'pairwse'; did you mean 'pairwise'?"),
    ("split", SplitSpec(name="s", factory=object, description="x", provides=("vaild",)),
     "provides: unknown value 'vaild'; did you mean 'valid'?"),
])
def test_a_spec_outside_the_vocabulary_fails_at_start_up(kind, spec, message):
    with pytest.raises(PluginSpecError, match="registered by") as err:
        _registry_with(kind, spec)
    assert message in str(err.value) and f"'{spec.name}'" in str(err.value)


def test_dmr_declares_relevance_scores_and_serves_ctr_only_without_its_match_network():
    spec = Registry.load().get("model", "dmr")
    assert spec.score_kind == "logit" and "factors" in spec.offers
    assert spec.serves({"no_u2i": False}) >= {"ctr", "itemrec", "userrec"}
    assert spec.serves({"no_u2i": True}) == {"ctr"}
