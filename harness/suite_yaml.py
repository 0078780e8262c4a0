"""Reading suite YAML with limits: a suite is a small, hand-written file, so anything that is not (a folder, a FIFO,
a huge or non-UTF-8 file, an alias bomb, a key given twice) is refused with one message naming the culprit and the
fix, before anything is built from it.

Aliases are checked on the composed node graph, where an alias is a reference to its anchor's node: the size the
document would have once every alias is expanded is counted per node (memoised), so a 587-byte bomb that expands
to billions of nodes is refused in microseconds without ever building the expansion.

Internal: plugin authors use `harness.plugin`.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from .errors import ConfigError

MAX_BYTES = 1 << 20
"""The largest suite file read (1 MiB; the largest shipped suite is a few KiB)."""

MAX_NODES = 100_000
"""The most YAML nodes a document may have once its aliases are expanded (a generous grid has a few thousand)."""

_MERGE = "tag:yaml.org,2002:merge"


class _Refused(yaml.YAMLError):
    """A document the limits refuse; `mark` is where (line and column), `problem` what and the fix."""

    def __init__(self, problem: str, mark=None):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class SuiteLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice (YAML would silently keep the last one)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        if isinstance(node, MappingNode):
            seen: dict[Any, Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:  # `<<: *base` — explicit keys may override merged ones
                    continue
                key = self.construct_object(key_node, deep=False)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    continue
                if first is not None:
                    raise _Refused(f"duplicate key {key!r} (first given at line {first.start_mark.line + 1}); "
                                   "YAML would keep only the last one: merge the two into one", key_node.start_mark)
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def expanded_size(root: Node, limit: int = MAX_NODES) -> int:
    """The number of nodes the document has once every alias is expanded, counting each node once per reference
    (memoised per node, so linear in the composed graph); raises _Refused past `limit` or on an alias inside its
    own anchor."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _Refused("an alias refers to the anchor that contains it (a recursive structure); "
                           "write the value out instead", node.start_mark)
        active.add(key)
        total = 1
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                raise _Refused(f"the document expands to more than {limit:,} values through its aliases (*name); "
                               "an alias bomb or a runaway anchor: write the values out, or use fewer nested "
                               "aliases", child.start_mark)
        active.discard(key)
        sizes[key] = total
        return total

    return size(root)


def load(text: str, limit: int = MAX_NODES) -> Any:
    """The data of one YAML document, read with SuiteLoader after the alias-expansion limit is checked."""
    loader = SuiteLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded_size(node, limit)
        return loader.construct_document(node)
    except RecursionError:
        raise _Refused("the document is nested too deeply; a suite needs a few levels of lists and mappings") from None
    finally:
        loader.dispose()


def yaml_problem(exc: yaml.YAMLError) -> str:
    """'at line L, column C: what' for a YAML error, with a fix when it is a syntax error."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    if isinstance(exc, _Refused):
        return f"refused{where}: {problem}"
    return f"YAML syntax error{where}: {problem}; fix the indentation/quoting there"


def read_text(path: str | Path, what: str = "suite file", max_bytes: int = MAX_BYTES) -> str:
    """The text of a regular UTF-8 file of at most max_bytes. The file is stat-ed before it is opened, so a FIFO
    or a device is refused instead of blocking the read."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{what} {str(path)!r} not found; pass a path to a .yaml suite (see suites/)") from None
    except OSError as exc:
        raise ConfigError(f"{what} {str(path)!r} cannot be read ({exc.strerror}); pass a readable .yaml file") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{what} {str(path)!r} is a folder; pass the .yaml file itself, e.g. {path / 'suite.yaml'}")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {str(path)!r} is not a regular file (a FIFO, socket or device); "
                          "save the suite as a .yaml file and pass that")
    if st.st_size > max_bytes:
        raise ConfigError(f"{what} {str(path)!r} is {st.st_size:,} bytes, over the limit of {max_bytes:,}; "
                          "a suite is a short YAML file: is this the right path?")
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"{what} {str(path)!r} cannot be read ({exc.strerror}); check its permissions") from None
    if len(data) > max_bytes:
        raise ConfigError(f"{what} {str(path)!r} is over the limit of {max_bytes:,} bytes; "
                          "a suite is a short YAML file: is this the right path?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{what} {str(path)!r} is not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line}); "
                          "save it as UTF-8") from None
