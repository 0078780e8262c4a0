"""The dataset disk cache: a dataset plugin's output saved under a key of its resolved parameters.

    <cache_root()>/datasets/<name>-<param hash>[-<source hash>]/   (parquet + meta.json, see Dataset.save)

The key hashes the resolved parameters (defaults filled in) and, for file-backed datasets, the
size and mtime of every source file, so editing a file invalidates its entry. Entries are written
to a temporary directory and moved into place with `os.replace`, so parallel workers that race
on one key never see a half-written entry (the loser just drops its copy). A dataset's `truth` is cached with it
when it is a plain dataclass of arrays and numbers (the synthetic world's; `truth.npz`). Datasets whose spec says
`cache=False`, that carry prebuilt CTR rows, or another kind of truth are never cached.

Internal: plugin authors import what they need of it from `harness.plugin`.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .data import Dataset, can_save_truth
from .errors import ConfigError, DataError

CACHE_ENV = "MATCHBENCH_CACHE"


def cache_root() -> Path:
    """`$MATCHBENCH_CACHE`, else `./.matchbench_cache` in the working directory."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.cwd() / ".matchbench_cache"


def param_hash(obj: Any) -> str:
    """First 16 hex digits of the sha256 of `obj` as canonical JSON (sorted keys, compact)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _files(p: Path) -> list[Path]:
    if p.is_dir():
        return sorted(f for f in p.iterdir() if f.is_file())
    return [p]


def source_stamp(spec: Any, params: dict[str, Any]) -> list[list[Any]]:
    """[path, size, mtime_ns] of each file the dataset reads (a folder stands for the files in it);
    a missing file stamps as size -1 so the plugin itself reports it."""
    if getattr(spec, "sources", None) is not None:
        paths = list(spec.sources(params) or [])
    elif params.get("path"):
        paths = [params["path"]]
    else:
        return []
    stamp = []
    for p in paths:
        for f in _files(Path(p).expanduser()):
            try:
                st = f.stat()
                stamp.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
            except OSError:
                stamp.append([str(f), -1, -1])
    return stamp


CHECKS_VERSION = 1
"""Part of every cache key; bumped when the loaders start refusing data they used to accept (a time of 1e30, a
line cut off at the end of a file), so entries built before are rebuilt, and checked, instead of served."""


def dataset_key(name: str, spec: Any, params: dict[str, Any]) -> str:
    """The cache key of a dataset: its name, a hash of its resolved params (with CHECKS_VERSION) and of its source
    files' stamps."""
    key = f"{name}-{param_hash(dict(params, _checks=CHECKS_VERSION))}"
    stamp = source_stamp(spec, params)
    if stamp:
        key += "-" + param_hash(stamp)
    return key


_kept: dict[str, Dataset] = {}
_keeping = False


@contextmanager
def keep_last_loaded():
    """While a suite runs its cells in this process, keep the last loaded dataset that the disk cache cannot hold
    (a synthetic world with its truth, prebuilt CTR impressions) in memory, so the pre-flight's load serves the
    cells that follow instead of building it again; one at a time, dropped when the block ends."""
    global _keeping
    _keeping = True
    try:
        yield
    finally:
        _keeping = False
        _kept.clear()


def _build(spec: Any, name: str, resolved: dict[str, Any]) -> Dataset:
    """The plugin's load; a data error in the copy `datasets fetch` imported names that copy, since it is read
    before the shared data and a damaged or truncated import (--no-verify) would otherwise shadow good files."""
    try:
        return spec.factory(**resolved)
    except DataError as exc:
        folder = raw_dir(name)
        if folder.is_dir() and (str(folder) in str(exc) or str(folder.resolve()) in str(exc)):
            raise DataError(f"{exc}. That file is the copy `matchbench datasets fetch` imported into the cache, "
                            f"which is read before the shared data: delete that folder (rm -r {folder}) to use "
                            f"the shared data again, or run `matchbench datasets fetch {name} --from <a good "
                            "copy>`") from None
        raise


def load_dataset(registry: Any, name: str, params: dict[str, Any] | None = None, cache: bool = True) -> Dataset:
    """Validate `params` against dataset `name`'s schema, then load it from the disk cache or build and
    cache it. Raises ConfigError listing every parameter problem."""
    spec = registry.get("dataset", name)
    resolved, problems = spec.schema.validate(params or {}, f"dataset {name!r}")
    if problems:
        raise ConfigError(problems)
    if not cache or not getattr(spec, "cache", True):
        return _build(spec, name, resolved)

    key = dataset_key(name, spec, resolved)
    parent = cache_root() / "datasets"
    entry = parent / key
    if (entry / "meta.json").exists():
        try:
            return Dataset.load(entry)
        except Exception:  # a corrupt or old-format entry: rebuild it
            shutil.rmtree(entry, ignore_errors=True)
    if key in _kept:
        return _kept[key]

    dataset = _build(spec, name, resolved)
    # objects the cache cannot hold (prebuilt CTR rows, a truth that is not a plain dataclass): never cached
    if dataset.impressions is not None or (dataset.truth is not None and not can_save_truth(dataset.truth)):
        if _keeping:
            _kept.clear()
            _kept[key] = dataset
        return dataset
    dataset.meta.setdefault("checksum", f"fingerprint:{dataset.fingerprint}")
    dataset.meta.update(fingerprint=dataset.fingerprint, cache_key=key, params=resolved)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{key}.tmp-"))
    try:
        dataset.save(tmp)
        try:
            os.replace(tmp, entry)
        except OSError:  # another worker put the entry in place first: keep theirs
            if not (entry / "meta.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # Return what a cache hit returns, so a first run and a resumed one see the same dataset.
    return Dataset.load(entry)


_split_kept: dict[tuple, Any] = {}


def split_dataset(registry: Any, dataset: Dataset, split_name: str, split_params: dict[str, Any], seed: int) -> Any:
    """The split of `dataset` by (split_name, split_params, seed), built once per process: cells that share dataset,
    split and seed (every model of a grid) reuse the last one built here (the pre-flight's, in-process) instead of
    splitting again. One kept at a time, so memory stays one split's; splits are read-only to models."""
    # a cached dataset is named by its cache key (each cell loads its own copy); another by identity, the object
    # kept alive with its split so that its id cannot be reused
    data_key = dataset.meta.get("cache_key") or ("object", id(dataset))
    key = (data_key, split_name, param_hash(split_params), int(seed))
    if key not in _split_kept:
        split = registry.create("split", split_name, **split_params).split(dataset, seed)
        _split_kept.clear()
        _split_kept[key] = (dataset, split)
    return _split_kept[key][1]


def raw_dir(name: str) -> Path:
    """Where `matchbench datasets fetch NAME --from PATH` puts its verified copy of NAME's raw files:
    `<cache_root()>/raw/<name>/`. Dataset plugins look here when no `path` is given."""
    return cache_root() / "raw" / name


def import_raw(name: str, files: list[Path], manifest: dict[str, Any]) -> Path:
    """Copy `files` (already verified by the caller) into raw_dir(name), replacing what was there, and
    write `FETCHED.json` (the manifest: where they came from, their sha256). Returns the folder."""
    dest = raw_dir(name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{name}.tmp-"))
    try:
        for f in files:
            shutil.copyfile(f, tmp / Path(f).name)
        (tmp / "FETCHED.json").write_text(json.dumps(manifest, indent=1, default=str))
        old = dest.with_name(f".{name}.old-{os.getpid()}")
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """The sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
