"""matchbench core: hook specs, registry, data model, splits, ranking, runner. Knows no concrete method.

Public: `harness.plugin` (everything a plugin author needs), `harness.testing` (the conformance kit),
`harness.api` (the Python API) and the `matchbench` command. Every other module is internal and may change.
"""
from .hookspecs import hookimpl

__all__ = ["hookimpl"]
__version__ = "0.1.0"
