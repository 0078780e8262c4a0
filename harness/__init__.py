"""matchbench core: hook specs, registry, data model, splits, ranking, runner. Knows no concrete method."""
from .hookspecs import hookimpl

__all__ = ["hookimpl"]
__version__ = "0.1.0"
