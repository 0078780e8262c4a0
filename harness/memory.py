"""The memory guard: an allocation the harness plans above the machine's memory is refused before it is made.

A dense users × items matrix at 10⁶ × 10⁵ is 800 GB; asked for, the kernel kills the process (no message, no
record). `require(nbytes, what, fix)` compares an estimate with the memory this process may use and raises a
ConfigError naming what needed it and the parameter to change; the CLI turns that into exit 2.

The budget is `MATCHBENCH_MEMORY_GIB` when set (a cap for a shared machine, or a test), otherwise the memory the
kernel reports as available (Linux `MemAvailable`, else total physical memory), times `SHARE` for headroom.

Internal: plugin authors use `harness.plugin` (`require_memory`); this module may change between versions.
"""
from __future__ import annotations

import os

from harness.errors import ConfigError

ENV = "MATCHBENCH_MEMORY_GIB"
SHARE = 0.8  # of the available memory one allocation may plan to take (the rest: the process, the page cache)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def budget_bytes() -> int:
    """Bytes one planned allocation may take."""
    cap = os.environ.get(ENV)
    if cap:
        try:
            gib = float(cap)
        except ValueError:
            raise ConfigError(f"{ENV}={cap!r} is not a number; set it to the GiB this process may use, "
                              "e.g. 4") from None
        if not gib > 0:
            raise ConfigError(f"{ENV}={cap!r} must be a positive number of GiB")
        return int(gib * 2**30)
    avail = _meminfo_available()
    if avail is None:
        try:
            avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return 1 << 62  # unknown: no guard
    return int(avail * SHARE)


def fmt_bytes(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def require(nbytes: float, what: str, fix: str) -> None:
    """Refuse a planned allocation of `nbytes` for `what` when it exceeds the budget; `fix` names the parameter to
    change (e.g. "lower n_users or n_items")."""
    budget = budget_bytes()
    if nbytes > budget:
        source = f"set by {ENV}" if os.environ.get(ENV) else f"{SHARE:.0%} of the available memory"
        raise ConfigError(f"{what} needs {fmt_bytes(nbytes)}, more than this process may use "
                          f"({fmt_bytes(budget)}, {source}); {fix}")
