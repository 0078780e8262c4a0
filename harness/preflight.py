"""Pre-flight: load and split every distinct (dataset, split) of the cells to run once, before any training.

A data problem (a malformed file, a split the data cannot support) is then one message naming the file, the line
and the fix, raised before any cell runs (the CLI exits 2), instead of a FAILED cell per model and seed. The
loads go through the disk cache (`harness.cache`), so the cells that follow read them back instead of parsing the
files again. Splits that depend on the seed are checked with the first seed of their cells.

Internal: plugin authors use `harness.plugin`.
"""
from __future__ import annotations

from typing import Iterable

from .cache import load_dataset, param_hash, split_dataset
from .errors import DataError, MatchbenchError
from .registry import Registry
from .splits import SplitData
from .suite import Cell

__all__ = ["preflight", "check_rankable"]

RANKING_TASKS = ("itemrec", "userrec")


def _key(cell: Cell) -> tuple[str, str]:
    return (f"{cell.dataset.name}-{param_hash(cell.dataset.params)}",
            f"{cell.split.name}-{param_hash(cell.split.params)}")


def by_data_group(cells: list[Cell]) -> list[Cell]:
    """The cells reordered so that those sharing dataset, split and seed run one after another (groups in the
    order of their first cell, cells in suite order within a group): a process then builds each split once."""
    first: dict[tuple, int] = {}
    for i, cell in enumerate(cells):
        first.setdefault((*_key(cell), cell.seed), i)
    return sorted(cells, key=lambda c: first[(*_key(c), c.seed)])


def preflight(cells: Iterable[Cell], registry: Registry) -> int:
    """Load and split each distinct (dataset, split) of `cells` (skipped cells aside); raise one DataError listing
    every data problem found. Returns the number of (dataset, split) combinations checked. Errors that are not
    about the input (a plugin's bug) are left for the cell to record."""
    first: dict[tuple[str, str], Cell] = {}
    tuned: set[tuple[str, str]] = set()
    for cell in cells:
        if not cell.skip_reason:
            first.setdefault(_key(cell), cell)
            if cell.model.tune is not None:
                tuned.add(_key(cell))
    problems: dict[tuple[str, str], str] = {}
    bad_data: set[str] = set()
    # the last combination loaded stays in memory for datasets the disk cache cannot hold (harness.cache
    # keep_last_loaded): going backwards leaves the first one there, the one the first cells need
    for key, cell in reversed(first.items()):
        data_key, _ = key
        if data_key in bad_data:
            continue
        where = f"dataset {cell.labels.get('data', cell.dataset.name)!r}"
        try:
            dataset = load_dataset(registry, cell.dataset.name, cell.dataset.params)
        except MatchbenchError as exc:
            problems[key] = f"{where}: {exc}"
            bad_data.add(data_key)
            continue
        except Exception:  # not a data problem: the cells record it with its traceback
            continue
        where += f", split {cell.split.name!r} (seed {cell.seed})"
        try:
            split = split_dataset(registry, dataset, cell.split.name, cell.split.params, cell.seed)
            check_rankable(split, cell)
            if key in tuned:
                check_tunable(split)
        except MatchbenchError as exc:
            problems[key] = f"{where}: {exc}"
        except Exception:
            continue
    if problems:
        listed = [problems[k] for k in first if k in problems]  # in the suite's order
        head = "a data problem" if len(listed) == 1 else f"{len(listed)} data problems"
        raise DataError(f"{head}, found before any training (nothing was run):\n"
                        + "\n".join(f"  - {p}" for p in listed))
    return len(first)


def check_tunable(split: SplitData) -> None:
    """A study chooses by the validation set: where its targets are also training events (temporal's `valid: true`
    without a held-out window), it rewards memorising them and its choice says nothing about the test."""
    if split.info.get("valid_targets_in_train"):
        raise DataError("a tune: block chooses on the validation set, but this split's validation targets are also "
                        "training events (the study would reward memorising them); hold the validation window out "
                        "of training: temporal with calibration >= horizon, or test_fraction/valid_fraction, or "
                        "leave_one_out")


def check_rankable(split: SplitData, cell: Cell) -> None:
    """A ranking task needs at least one test user-state with a target left to rank (one not excluded as already
    seen); otherwise the cell would finish with 0 queries and no metric at all."""
    settings = cell.settings
    if not set(settings.tasks) & set(RANKING_TASKS) or split.test is None:
        return
    test = split.test
    if split.n_items < 2:
        raise DataError(f"the data has {split.n_items} item{'' if split.n_items == 1 else 's'}: there is nothing to "
                        "rank, every ranking metric would be trivial or empty; use a dataset with more items")
    if test.remaining_targets(settings.exclude_seen).nnz:
        return
    if not test.n_states or not test.targets.nnz:
        why = f"{test.n_states} test user-states with {test.targets.nnz} targets"
        fix = "give the test window more events (a longer horizon, or more data after the cut)"
    else:
        why = (f"all {test.targets.nnz} targets of its {test.n_states} test user-states are already in their "
               "histories and excluded (exclude_seen: true)")
        fix = "use data with new items after the cut, or set exclude_seen: false to count repeats"
    raise DataError(f"the split leaves no rankable queries ({why}); every ranking metric would be empty: {fix}")
