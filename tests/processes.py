"""The processes below a pid, from /proc (psutil is not a dependency): for the tests that check a server or a UI
leaves nothing running when it stops."""
from __future__ import annotations

from pathlib import Path


def processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, start time) of every process."""
    table = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # it ended while we looked
                continue
            table[int(d.name)] = (int(fields[1]), fields[0], fields[19])
    return table


def descendants(pid: int) -> set[tuple[int, str]]:
    """(pid, start time) of every process below `pid`."""
    table, found, todo = processes(), set(), [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, _, started) in table.items():
            if ppid == parent:
                found.add((child, started))
                todo.append(child)
    return found


def alive(procs: set[tuple[int, str]]) -> list[int]:
    """Those still running (the same start time, so not a reused pid; zombies hold no port)."""
    table = processes()
    return [pid for pid, started in procs if pid in table and table[pid][2] == started and table[pid][1] != "Z"]
