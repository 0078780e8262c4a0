"""The `matchbench` command line. Bad input prints one clear message and exits 2, never a traceback."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import MatchbenchError

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="matchbench",
                                description="Benchmark user-item matching methods on shared data, splits and metrics.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a suite (resumes: cells already FINISHED are skipped)")
    r.add_argument("suite", help="suite YAML path, or a name in ./suites")
    r.add_argument("--executor", default=None, choices=["local", "ray"],
                   help="local worker processes, or Ray tasks (default: the suite's executor, else local)")
    r.add_argument("--address", default=None, metavar="ADDR",
                   help="ray: a running cluster (auto, HOST:PORT, ray://HOST:10001); default a local Ray instance")
    r.add_argument("--retries", type=int, default=None, metavar="N",
                   help="attempts more for a cell whose worker process died (default: the suite's retries, else 0)")
    r.add_argument("--jobs", type=int, default=None, help="worker processes (default: the suite's `jobs`, else 1)")
    r.add_argument("--dry-run", action="store_true", help="validate and list the cells, run nothing")
    r.add_argument("--rerun", action="store_true", help="run every cell again, even FINISHED ones")
    r.add_argument("--tracking-uri", default=None, help="MLflow store (default: the suite's, else sqlite:///mlruns.db)")
    r.add_argument("--no-report", action="store_true", help="do not write reports/<suite>.md afterwards")
    ls = sub.add_parser("list", help="list plugins with their parameters")
    ls.add_argument("kind", nargs="?", default=None,
                    help="dataset(s), split(s), model(s), loss(es), planner(s), metric(s), tracker(s)")
    ls.add_argument("pattern", nargs="?", default=None, help="only names matching this shell wildcard, e.g. '*rnn*'")
    rp = sub.add_parser("report", help="write reports/<suite>.md from the tracking store")
    rp.add_argument("suite")
    rp.add_argument("--tracking-uri", default=None)
    rp.add_argument("--out", default=None, help="output folder (default: the suite's report.dir, else reports)")
    rs = sub.add_parser("results", help="print the aggregated results table")
    rs.add_argument("suite")
    rs.add_argument("--format", choices=["md", "csv", "json", "summary"], default="md",
                    help="md: every table; csv / json: for scripts; summary: one row per method, headline metrics")
    rs.add_argument("--tracking-uri", default=None)
    ck = sub.add_parser("check", help="test the suites' claims: against their tracked results (exit 0 whatever the "
                                      "verdicts: it is a measurement)")
    ck.add_argument("suites", nargs="+")
    ck.add_argument("--format", choices=["table", "md", "csv", "json"], default="table")
    ck.add_argument("--out", default=None, help="write the markdown to this file (e.g. reports/claims.md)")
    ck.add_argument("--tracking-uri", default=None)
    ex = sub.add_parser("export", help="write a suite's tracked results to a folder (results/<suite>): params, "
                                       "metrics, curves, per-query values; `import` reads it into any store")
    ex.add_argument("suite")
    ex.add_argument("--out", default=None, metavar="DIR", help="the archive's folder (default results/<suite>)")
    ex.add_argument("--tracking-uri", default=None)
    im = sub.add_parser("import", help="record an archive written by `export` in the tracking store (cells the "
                                       "store already has FINISHED are left alone)")
    im.add_argument("suite")
    im.add_argument("--from", dest="source", default=None, metavar="DIR",
                    help="the archive's folder (default results/<suite>)")
    im.add_argument("--tracking-uri", default=None)
    ui = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 against the same store")
    ui.add_argument("--tracking-uri", default="sqlite:///mlruns.db")
    ui.add_argument("--port", type=int, default=5000)
    sv = sub.add_parser("server", help="start an MLflow tracking server on 127.0.0.1 for a team's runs (Ctrl-C stops)")
    sv.add_argument("--port", type=int, default=5000, help="port (default 5000; 0 picks a free one)")
    sv.add_argument("--backend-store-uri", default="sqlite:///mlruns.db",
                    help="sqlite:///PATH.db (put in WAL mode) or postgresql://USER@HOST:PORT/DB "
                         "(pip install 'matchbench[server]'); default sqlite:///mlruns.db")
    sv.add_argument("--artifacts-destination", default=None, metavar="DIR",
                    help="folder the server keeps artifacts in (default: mlartifacts/ beside the SQLite file)")
    sv.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--workers", type=int, default=None, help="server worker processes (default: MLflow's, 4)")
    ds = sub.add_parser("datasets", help="list dataset plugins, show one, or fetch (verify + import) its files")
    ds.add_argument("action", choices=["list", "info", "fetch"])
    ds.add_argument("name", nargs="?")
    ds.add_argument("--from", dest="source", default=None, metavar="PATH",
                    help="fetch: your local copy (a folder or file) to verify and import into the cache")
    ds.add_argument("--no-verify", action="store_true", help="fetch: import even if a checksum does not match")
    ds.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                    help="fetch: a dataset parameter (YAML value), e.g. -p format=prepared; repeatable")
    return p


def _kind(arg: str | None) -> str | None:
    """The singular plugin kind for a singular or plural name ('loss', 'losses'), so either spelling works."""
    if arg is None:
        return None
    from .specs import KINDS

    forms = {k: k for k in KINDS} | {_plural(k): k for k in KINDS}
    k = forms.get(arg.strip().lower())
    if k is None:
        from .errors import ConfigError, did_you_mean

        raise ConfigError(f"unknown plugin kind {arg!r}{did_you_mean(arg.strip().lower(), KINDS)}; "
                          "singular or plural, e.g. `matchbench list models`")
    return k


def _plural(kind: str) -> str:
    """'models', 'losses': the heading and the plural a user may type."""
    return kind + ("es" if kind.endswith("s") else "s")


def cmd_list(args) -> int:
    from fnmatch import fnmatchcase

    from rich.console import Console
    from rich.markup import escape

    from .registry import Registry
    from .specs import KINDS

    kinds = [_kind(args.kind)] if args.kind else KINDS
    reg, con = Registry.load(), Console(highlight=False)
    pattern = args.pattern.lower() if args.pattern else None
    for kind in kinds:
        con.print(f"[bold]{_plural(kind)}[/bold]")
        names = [n for n in reg.names(kind) if pattern is None or fnmatchcase(n.lower(), pattern)]
        for name in names:
            spec = reg.get(kind, name)
            sup = spec.supports()
            con.print(f"  [cyan]{escape(name)}[/cyan] — {escape(spec.description)}"
                      + (f" [dim]({escape(str(sup))})[/dim]" if sup else ""))
            for p in spec.params:
                con.print(f"      {p.describe()}", markup=False)
        if not reg.names(kind):
            con.print("  (none registered)")
        elif not names:
            con.print(f"  (no {_plural(kind)} match {args.pattern!r})", markup=False)
    return 0


def cmd_run(args) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from . import api
    from .executors import executor_for
    from .registry import Registry
    from .runner import make_tracker, run_suite

    con = Console(stderr=True, highlight=False)
    reg = Registry.load()
    s = api.suite(args.suite, reg)
    _print_warnings(s)
    jobs = effective_jobs(args.jobs, s)
    executor = executor_for(s, args.executor, jobs, args.retries, args.address)  # ray missing: exit 2, named
    if args.dry_run:
        from .preflight import preflight

        checked = preflight(s.runnable, reg)  # a data problem: DataError, exit 2 (a run does this in run_suite)
        con.print(f"data: {checked} (dataset, split) combination(s) loaded and split, no problem found", markup=False)
        for c in s.cells:
            con.print(f"  {c.config_hash}  {escape(c.run_name)}"
                      + (f"  [yellow]skipped: {escape(c.skip_reason)}[/yellow]" if c.skip_reason else ""))
        con.print(f"{len(s.cells)} cells ({len(s.runnable)} to run) — validated, nothing run (--dry-run)")
        return 0
    check_tracking(reg, s, args.tracking_uri)
    if s.report.get("enabled", True) and not args.no_report:
        _check_out(s.report.get("dir", "reports"), "report.dir")  # before the run, not after it
    tracker = make_tracker(reg, s, args.tracking_uri)
    counts = {"FINISHED": 0, "FAILED": 0, "SKIPPED": 0}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=con, transient=False) as prog:
        cells_task = prog.add_task(f"{escape(s.name)}: cells", total=None)
        epoch_task = prog.add_task("", total=None, visible=executor.in_process)

        def on_record(rec, done, total):
            counts[rec.status] += 1
            prog.update(cells_task, completed=done, total=total)
            mark = {"FINISHED": "[green]done[/green]", "FAILED": "[red]FAILED[/red]",
                    "SKIPPED": "[yellow]skipped[/yellow]"}
            prog.console.print(f"{mark[rec.status]} {escape(rec.run_name)} ({rec.wall_time:.1f}s)"
                               + (f": {escape(rec.reason)}" if rec.reason else "")
                               + (f": {escape(rec.error.strip().splitlines()[-1])}" if rec.error else ""))

        def on_epoch(name, epoch, total):
            prog.update(epoch_task, description=f"  {escape(name)}: epoch", completed=epoch, total=total)

        records = run_suite(s, reg, executor, tracker, rerun=args.rerun, on_record=on_record, progress=on_epoch,
                            on_note=lambda note: prog.console.print(f"note: {escape(note)}"))
    resumed = len(s.cells) - len(records)
    con.print(f"{s.name}: {counts['FINISHED']} finished, {counts['FAILED']} failed, {counts['SKIPPED']} skipped"
              + (f", {resumed} already finished (resumed; --rerun to redo)" if resumed else ""), markup=False)
    if s.report.get("enabled", True) and not args.no_report:
        from .report import write_suite_report

        path = write_suite_report(tracker, s)
        con.print(f"report: {path}", markup=False)
    return 1 if counts["FAILED"] else 0


def cmd_report(args) -> int:
    from . import api
    from .registry import Registry
    from .report import write_suite_report
    from .runner import make_tracker

    reg = Registry.load()
    s = api.suite(args.suite, reg)
    _check_out(args.out or s.report.get("dir", "reports"), "--out" if args.out else "report.dir")
    check_tracking(reg, s, args.tracking_uri)
    path = write_suite_report(make_tracker(reg, s, args.tracking_uri), s, args.out)
    print(path)
    return 0


def cmd_results(args) -> int:
    from . import api, report
    from .registry import Registry
    from .runner import make_tracker

    reg = Registry.load()
    s = api.suite(args.suite, reg)
    check_tracking(reg, s, args.tracking_uri)
    tracker = make_tracker(reg, s, args.tracking_uri)
    if args.format == "summary":
        from pathlib import Path

        from rich.console import Console

        from .report.aggregation import aggregate, long_frame, metric_key
        from .report.plots import safe_name
        from .report.summary import print_summary
        from .report.tuning import with_tuned

        # one read of the store for both the table (results_table's own steps) and the declared directions
        runs, long = long_frame(tracker, s.name, s.config_hashes, report.suite_labels(s))
        table = with_tuned(aggregate(long), runs)
        declared = {metric_key(m)[0]: int(d) for m, d in zip(long.get("metric", ()), long.get("direction", ()),
                                                              strict=True)}
        md = Path(s.report.get("dir", "reports")) / f"{safe_name(s.name)}.md"
        console = Console(width=None if sys.stdout.isatty() else 160)  # a pipe or a log: no folding at 80
        print_summary(table, console, s.report.get("metrics"), f"{s.name}: results", str(md) if md.exists()
                      else None, declared)
        return 0
    fn = {"md": report.results_markdown, "csv": report.results_csv, "json": report.results_json}[args.format]
    print(fn(tracker, s.name, configs=s.config_hashes, labels=report.suite_labels(s)))
    return 0


def cmd_check(args) -> int:
    from . import api
    from .claims import check_claims, markdown, print_verdicts, verdict_rows
    from .errors import ConfigError
    from .registry import Registry
    from .runner import make_tracker

    reg = Registry.load()
    suites = [api.suite(path, reg) for path in args.suites]
    bare = [s.source for s in suites if not s.claims]
    if bare:
        raise ConfigError([f"{src}: the suite has no claims: block to check" for src in bare])
    for s in suites:
        check_tracking(reg, s, args.tracking_uri)
    verdicts = check_claims((s, make_tracker(reg, s, args.tracking_uri)) for s in suites)
    if args.out:
        from pathlib import Path

        _check_out(Path(args.out).parent, "--out")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        title = "Paper claims, checked on the tracked results (`matchbench check`)"
        Path(args.out).write_text(markdown(verdicts, title, " ".join(args.suites)))
        print(args.out)
    elif args.format == "table":
        from rich.console import Console

        print_verdicts(verdicts, Console(width=None if sys.stdout.isatty() else 200))  # a pipe: no folding
    elif args.format == "md":
        print(markdown(verdicts))
    else:
        import pandas as pd

        frame = pd.DataFrame(verdict_rows(verdicts))
        print(frame.to_csv(index=False) if args.format == "csv" else frame.to_json(orient="records", indent=1))
    return 0


def cmd_ui(args) -> int:
    """Run MLflow's server in its own process group and pass SIGTERM, SIGINT and SIGHUP on to the whole group:
    the server's worker processes would otherwise outlive `matchbench ui` and keep holding the port."""
    import os
    import signal
    import subprocess
    import time

    if args.tracking_uri.split("://", 1)[0].lower() in ("http", "https"):  # a tracking server serves its own UI
        from .errors import ConfigError

        problem = tracking_uri_problem(args.tracking_uri)
        if problem:
            raise ConfigError(problem)
        print(f"MLflow UI: open {args.tracking_uri.rstrip('/')} in a browser (the tracking server serves it)")
        return 0
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", args.tracking_uri,
           "--host", "127.0.0.1", "--port", str(args.port)]
    print(f"MLflow UI on http://127.0.0.1:{args.port} ({args.tracking_uri}); Ctrl-C to stop", flush=True)
    if not hasattr(os, "killpg"):  # no process groups (Windows): the server stops with the console
        return subprocess.call(cmd)
    grace = 10.0  # seconds the server gets to shut down before it is killed
    stopped: list[float] = []  # when the first stop signal came
    group: list[int] = []  # the server's process group id, once it runs

    def to_group(sig: int) -> bool:
        """Send sig to the server's group; False when nothing of it is left."""
        try:
            os.killpg(group[0], sig)
            return True
        except (IndexError, ProcessLookupError, PermissionError):
            return False

    def on_stop(_signum, _frame) -> None:
        stopped.append(time.monotonic())
        to_group(signal.SIGTERM)

    previous = {sig: signal.signal(sig, on_stop) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        proc = subprocess.Popen(cmd, start_new_session=True)
        group.append(proc.pid)
        if stopped:  # the signal came before the server had a process group
            to_group(signal.SIGTERM)
        code = None
        while code is None:
            try:
                code = proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                if stopped and time.monotonic() - stopped[0] > grace:
                    to_group(signal.SIGKILL)
        if to_group(signal.SIGTERM):  # the server's own workers may outlive it by a moment
            deadline = time.monotonic() + grace
            while to_group(0) and time.monotonic() < deadline:
                time.sleep(0.1)
            to_group(signal.SIGKILL)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopped:
        return 0
    return code if code >= 0 else 128 - code


def cmd_server(args) -> int:
    """`matchbench server`: harness.server runs `mlflow server` in its own process group until Ctrl-C/SIGTERM."""
    from .errors import ConfigError
    from .server import ServerConfig, serve, sqlite_path

    db = sqlite_path(args.backend_store_uri)
    problem = None
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = f"cannot create the folder {db.parent} ({exc.strerror or exc})"
        problem = problem or tracking_uri_problem(args.backend_store_uri)
    if problem:
        why = problem.split(": ", 1)[-1].split("; ", 1)[0]
        raise ConfigError(f"--backend-store-uri {args.backend_store_uri}: {why}; pass a .db file in a folder you "
                          "can write to")
    return serve(ServerConfig(port=args.port, backend_store_uri=args.backend_store_uri,
                              artifacts_destination=args.artifacts_destination, host=args.host, workers=args.workers))


def cmd_datasets(args) -> int:
    from .errors import ConfigError
    from .registry import Registry

    reg = Registry.load()
    if args.action == "list":
        for name in reg.names("dataset"):
            print(f"{name:12s} {reg.get('dataset', name).description}")
        return 0
    if not args.name:
        raise ConfigError(f"datasets {args.action} needs a NAME: matchbench datasets {args.action} movielens"
                          + (" --from PATH" if args.action == "fetch" else ""))
    if args.action == "fetch":
        return _fetch(reg, args)
    spec = reg.get("dataset", args.name)
    print(f"{spec.name}: {spec.description}")
    for p in spec.params:
        print(f"  {p.describe()}")
    for card in (Path("datasets") / f"{spec.name}.md",
                 Path(__file__).resolve().parents[1] / "datasets" / f"{spec.name}.md"):
        if card.exists():
            print()
            print(card.read_text())
            break
    return 0


def _fetch(reg, args) -> int:
    """`datasets fetch NAME --from PATH`: load the files at PATH through the plugin (which checks every row and,
    where it knows them, every file's sha256), copy the files it read into the cache's raw folder, and build the
    cached dataset from that copy, so later runs need no path."""
    import os

    import yaml

    from . import suite_yaml
    from .cache import import_raw, load_dataset, raw_dir, sha256_file
    from .errors import ConfigError

    name = args.name
    spec = reg.get("dataset", name)
    names = spec.schema.names()
    if "path" not in names:
        raise ConfigError(f"dataset {name!r} reads no files (it has no path parameter): there is nothing to fetch")
    if not args.source:
        raise ConfigError(f"datasets fetch needs --from PATH: matchbench datasets fetch {name} --from /data/{name}")
    src = Path(args.source).expanduser()
    if not src.exists():
        raise ConfigError(f"--from {src}: no such file or folder; point --from at your copy of the {name} files")
    if not (src.is_dir() or src.is_file()):  # a FIFO or a device would block the read
        raise ConfigError(f"--from {src}: not a regular file or a folder; point --from at your copy of the {name} "
                          "files")
    params: dict = {}
    for item in args.param:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"-p {item!r}: expected KEY=VALUE, e.g. -p format=prepared")
        try:
            params[key.strip()] = suite_yaml.load(text, limit=1000) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"-p {item!r}: the value of {key.strip()} is not valid YAML "
                              f"({getattr(exc, 'problem', None) or exc}); close the bracket or quote it as text, "
                              f"e.g. -p '{key.strip()}=\"{text}\"'") from None
    if "path" in params:
        raise ConfigError("-p path=...: give the folder with --from instead")
    if args.no_verify:
        if "verify" not in names:
            raise ConfigError(f"dataset {name!r} has no verify parameter: --no-verify does not apply")
        params["verify"] = False
    resolved, problems = spec.schema.validate(dict(params, path=str(src)), f"dataset {name!r}")
    if problems:
        raise ConfigError(problems)
    dataset = spec.factory(**resolved)  # raises (exit 2) on a bad row or a checksum that does not match
    files = [Path(f) for f in (spec.sources(resolved) if spec.sources else [src])]
    files = [g for f in files for g in (sorted(x for x in f.iterdir() if x.is_file()) if f.is_dir() else [f])]
    checks = dataset.meta.get("files") or {}
    report = {}
    for f in files:
        c = checks.get(f.name) or {"sha256": sha256_file(f), "verified": False,
                                   "note": "not checked by the plugin: sha256 recorded, not verified"}
        report[f.name] = c
        mark = "verified" if c.get("verified") else "NOT verified"
        print(f"  {f}: sha256 {c['sha256']} — {mark} ({c.get('note', '')})")
    dest = import_raw(name, files, {"dataset": name, "from": str(src.resolve()), "files": report,
                                    "params": {k: v for k, v in resolved.items() if k != "path"}})
    print(f"imported {len(files)} file(s) into {dest}")
    try:
        cached = load_dataset(reg, name, params)
    except MatchbenchError as exc:  # e.g. csv: a plugin without a default location needs its path
        print(f"note: {name} does not find the imported copy without a path ({exc}); give path: "
              f"{dest / files[0].name} in suites")
        return 0
    print(f"cached {name}: {len(cached.interactions)} events, {cached.n_users} users, {cached.n_items} items; "
          f"later runs need no path (`{{name: {name}}}` reads {raw_dir(name)})")
    if not all(c.get("verified") for c in report.values()):
        print(f"note: {sum(not c.get('verified') for c in report.values())} file(s) have no known checksum or were "
              "not verified: they were imported as they are")
    env = os.environ.get("MATCHBENCH_DATA")
    if env:
        print(f"note: MATCHBENCH_DATA={env} is set; a {name} folder there takes precedence over the imported copy")
    return 0


def _print_warnings(suite) -> None:
    """The suite's warnings (entries listed twice, run once), each once, as plain text."""
    for w in suite.warnings:
        print(f"matchbench: warning: {w}", file=sys.stderr)


def effective_jobs(requested: int | None, suite) -> int:
    """Worker processes: --jobs, else the suite's `jobs`; at least 1 (else an error), at most the machine's cores
    (with a note) and never more than the cells there are to run."""
    import os

    from .errors import ConfigError

    if requested is not None and requested < 1:
        raise ConfigError(f"--jobs {requested}: must be at least 1 (worker processes); leave it out for the "
                          f"suite's jobs ({suite.jobs})")
    jobs, where = (requested, "--jobs") if requested is not None else (suite.jobs, "jobs (suite)")
    cores = os.cpu_count() or 1
    if jobs > cores:
        print(f"matchbench: note: {where} {jobs} is more than this machine's {cores} cores; capped at {cores} "
              "worker processes", file=sys.stderr)
        jobs = cores
    return max(1, min(jobs, len(suite.runnable)))


def _writable_dir_problem(path: Path) -> str | None:
    """Why `path` cannot be (or become) a folder we write to, or None: a file in the way, or a folder where a
    file cannot be created (probed by creating one: permissions alone do not tell, e.g. under /proc)."""
    import tempfile

    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a folder"
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is a file, so {path} cannot be created under it"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return f"cannot create a file in {existing} ({exc.strerror or exc})"
    return None


def _check_out(folder: str | Path, key: str) -> None:
    """The report's folder must be a folder we can write to, checked before anything is read or run."""
    from .errors import ConfigError

    problem = _writable_dir_problem(Path(folder))
    if problem:
        raise ConfigError(f"{key} {str(folder)!r}: {problem}; pass a folder you can write to (--out DIR)")


_STORE_SCHEMES = {"sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks", "databricks-uc",
                  "uc"}
"""Schemes MLflow has a tracking store for (a `+driver` suffix aside); plugins add theirs as entry points."""

CONNECT_TIMEOUT_S = 3.0


def cmd_export(args) -> int:
    from pathlib import Path

    from . import api
    from .archive import default_folder, export_suite
    from .registry import Registry
    from .runner import make_tracker

    reg = Registry.load()
    s = api.suite(args.suite, reg)
    check_tracking(reg, s, args.tracking_uri)
    folder = Path(args.out) if args.out else default_folder(s.name)
    _check_out(folder.parent, "--out")
    n = export_suite(make_tracker(reg, s, args.tracking_uri), s, folder)
    extra = "".join([f"; {n['not_in_grid']} record(s) of configurations no longer in the suite left out"
                     if n["not_in_grid"] else "",
                     f"; {n['tuned']} tuned cell(s): their trials are not archived" if n["tuned"] else ""])
    print(f"{folder}: {n['cells']} cell(s) of suite {s.name!r}{extra}")
    return 0


def cmd_import(args) -> int:
    from pathlib import Path

    from . import api
    from .archive import default_folder, import_archive
    from .registry import Registry
    from .runner import make_tracker

    reg = Registry.load()
    s = api.suite(args.suite, reg)
    check_tracking(reg, s, args.tracking_uri)
    folder = Path(args.source) if args.source else default_folder(s.name)
    n = import_archive(make_tracker(reg, s, args.tracking_uri), s, folder)
    extra = (f"; {n['not_in_grid']} archived cell(s) are not in the suite's current grid (reports leave them out)"
             if n["not_in_grid"] else "")
    print(f"{folder}: {n['imported']} cell(s) imported, {n['already']} already FINISHED in the store{extra}")
    return 0


def tracking_uri_problem(uri: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why an MLflow tracking URI cannot work, or None; checked before a run starts so that a mistyped URI is one
    message instead of a traceback, an empty store created somewhere, or a hang. sqlite: the database's folder
    exists and takes a new file; http(s): a TCP connection opens within `timeout` seconds."""
    import socket
    from importlib.metadata import entry_points
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    fix = "e.g. --tracking-uri sqlite:///mlruns.db (a file in this folder) or http://HOST:PORT (an MLflow server)"
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        return f"tracking URI {uri!r} is not a URI ({exc}); {fix}"
    scheme = parts.scheme.lower().split("+", 1)[0]
    if len(scheme) <= 1:  # none, or a Windows drive letter
        return f"tracking URI {uri!r} has no scheme; {fix}"
    if scheme not in _STORE_SCHEMES | {e.name for e in entry_points(group="mlflow.tracking_store")}:
        valid = ", ".join(sorted(_STORE_SCHEMES))
        return f"tracking URI {uri!r}: unknown scheme {parts.scheme!r} (valid: {valid}); {fix}"
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///"):
            return None if uri in ("sqlite://", "sqlite:///:memory:") else (
                f"tracking URI {uri!r}: a sqlite URI has three slashes before a relative path and four before an "
                f"absolute one; {fix}")
        db = Path(uri[len("sqlite:///"):].split("?", 1)[0])
        if str(db) in ("", ":memory:"):
            return None
        if db.exists() and not db.is_file():
            return f"tracking URI {uri!r}: {db} is not a file; point it at a .db file, {fix}"
        problem = (_writable_dir_problem(db.parent) if db.parent.exists()
                   else f"the folder {db.parent} does not exist")
        return f"tracking URI {uri!r}: {problem}; create the folder or choose another, {fix}" if problem else None
    if scheme == "file":
        problem = _writable_dir_problem(Path(url2pathname(parts.path)))
        return f"tracking URI {uri!r}: {problem}; choose a folder you can write to, {fix}" if problem else None
    if scheme in ("http", "https"):
        if not parts.hostname:
            return f"tracking URI {uri!r} names no host; {fix}"
        port = port or (443 if scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
        except OSError as exc:
            why = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
            return (f"tracking URI {uri!r}: no server answers at {parts.hostname}:{port} within {timeout:g} s "
                    f"({why}); start it (matchbench server --port {port}) or fix the URI")
    return None


def check_tracking(registry, suite, uri: str | None) -> None:
    """Refuse the tracking URI a command would use (--tracking-uri, else the suite's, else the tracker's default)
    when it cannot work, naming it and the fix; trackers without a uri parameter are left to themselves."""
    from .errors import ConfigError

    spec = registry.get("tracker", suite.tracking.get("tracker", "mlflow"))
    if "uri" not in spec.schema.names():
        return
    uri = uri or suite.tracking.get("uri") or spec.schema.defaults().get("uri")
    if isinstance(uri, str):
        problem = tracking_uri_problem(uri)
        if problem:
            raise ConfigError(problem)


COMMANDS = {"run": cmd_run, "list": cmd_list, "report": cmd_report, "results": cmd_results, "ui": cmd_ui,
            "datasets": cmd_datasets, "server": cmd_server, "check": cmd_check,
            "export": cmd_export, "import": cmd_import}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except MatchbenchError as exc:
        print(f"matchbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("matchbench: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
