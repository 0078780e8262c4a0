"""The `matchbench` command line. Bad input prints one clear message and exits 2, never a traceback."""
from __future__ import annotations

import argparse
import sys

from pathlib import Path

from .errors import MatchbenchError

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="matchbench", description="Benchmark user-item matching methods on shared data, splits and metrics.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a suite (resumes: cells already FINISHED are skipped)")
    r.add_argument("suite", help="suite YAML path, or a name in ./suites")
    r.add_argument("--executor", default="local", choices=["local"])
    r.add_argument("--jobs", type=int, default=None, help="worker processes (default: the suite's `jobs`, else 1)")
    r.add_argument("--dry-run", action="store_true", help="validate and list the cells, run nothing")
    r.add_argument("--rerun", action="store_true", help="run every cell again, even FINISHED ones")
    r.add_argument("--tracking-uri", default=None, help="MLflow store (default: the suite's, else sqlite:///mlruns.db)")
    r.add_argument("--no-report", action="store_true", help="do not write reports/<suite>.md afterwards")
    ls = sub.add_parser("list", help="list plugins with their parameters")
    ls.add_argument("kind", nargs="?", default=None, help="dataset(s), split(s), model(s), loss(es), planner(s), metric(s), tracker(s)")
    rp = sub.add_parser("report", help="write reports/<suite>.md from the tracking store")
    rp.add_argument("suite")
    rp.add_argument("--tracking-uri", default=None)
    rp.add_argument("--out", default=None, help="output folder (default: the suite's report.dir, else reports)")
    rs = sub.add_parser("results", help="print the aggregated results table")
    rs.add_argument("suite")
    rs.add_argument("--format", choices=["md", "csv", "json"], default="md")
    rs.add_argument("--tracking-uri", default=None)
    ui = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 against the same store")
    ui.add_argument("--tracking-uri", default="sqlite:///mlruns.db")
    ui.add_argument("--port", type=int, default=5000)
    ds = sub.add_parser("datasets", help="list dataset plugins or show one")
    ds.add_argument("action", choices=["list", "info"])
    ds.add_argument("name", nargs="?")
    return p


def _kind(arg: str | None) -> str | None:
    if arg is None:
        return None
    from .specs import KINDS

    k = arg.rstrip("s") if arg not in ("losses",) else "loss"
    if k not in KINDS:
        from .errors import ConfigError, did_you_mean

        raise ConfigError(f"unknown plugin kind {arg!r}{did_you_mean(k, KINDS)}")
    return k


def cmd_list(args) -> int:
    from rich.console import Console

    from .registry import Registry
    from .specs import KINDS

    reg, con = Registry.load(), Console(highlight=False)
    for kind in [_kind(args.kind)] if args.kind else KINDS:
        con.print(f"[bold]{kind}s[/bold]")
        for name in reg.names(kind):
            spec = reg.get(kind, name)
            sup = spec.supports()
            con.print(f"  [cyan]{name}[/cyan] — {spec.description}" + (f" [dim]({sup})[/dim]" if sup else ""))
            for p in spec.params:
                con.print(f"      {p.describe()}", markup=False)
        if not reg.names(kind):
            con.print("  (none registered)")
    return 0


def cmd_run(args) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from . import api
    from .executors import EXECUTORS
    from .registry import Registry
    from .runner import make_tracker, run_suite

    con = Console(stderr=True, highlight=False)
    reg = Registry.load()
    s = api.suite(args.suite, reg)
    jobs = args.jobs or int(s.raw.get("jobs", 1))
    if args.dry_run:
        for c in s.cells:
            con.print(f"  {c.config_hash}  {c.run_name}" + (f"  [yellow]skipped: {c.skip_reason}[/yellow]" if c.skip_reason else ""))
        con.print(f"{len(s.cells)} cells ({len(s.runnable)} to run) — validated, nothing run (--dry-run)")
        return 0
    tracker = make_tracker(reg, s, args.tracking_uri)
    counts = {"FINISHED": 0, "FAILED": 0, "SKIPPED": 0}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=con, transient=False) as prog:
        cells_task = prog.add_task(f"{s.name}: cells", total=None)
        epoch_task = prog.add_task("", total=None, visible=jobs == 1)

        def on_record(rec, done, total):
            counts[rec.status] += 1
            prog.update(cells_task, completed=done, total=total)
            mark = {"FINISHED": "[green]done[/green]", "FAILED": "[red]FAILED[/red]", "SKIPPED": "[yellow]skipped[/yellow]"}
            prog.console.print(f"{mark[rec.status]} {rec.run_name} ({rec.wall_time:.1f}s)"
                               + (f": {rec.reason}" if rec.reason else "")
                               + (f": {rec.error.strip().splitlines()[-1]}" if rec.error else ""))

        def on_epoch(name, epoch, total):
            prog.update(epoch_task, description=f"  {name}: epoch", completed=epoch, total=total)

        records = run_suite(s, reg, EXECUTORS[args.executor](jobs), tracker, rerun=args.rerun,
                            on_record=on_record, progress=on_epoch)
    resumed = len(s.cells) - len(records)
    con.print(f"{s.name}: {counts['FINISHED']} finished, {counts['FAILED']} failed, {counts['SKIPPED']} skipped"
              + (f", {resumed} already finished (resumed; --rerun to redo)" if resumed else ""))
    if s.report.get("enabled", True) and not args.no_report:
        from .report import write_report

        path = write_report(tracker, s.name, Path(s.report.get("dir", "reports")))
        con.print(f"report: {path}")
    return 1 if counts["FAILED"] else 0


def cmd_report(args) -> int:
    from . import api
    from .registry import Registry
    from .report import write_report
    from .runner import make_tracker

    reg = Registry.load()
    s = api.suite(args.suite, reg)
    path = write_report(make_tracker(reg, s, args.tracking_uri), s.name, Path(args.out or s.report.get("dir", "reports")))
    print(path)
    return 0


def cmd_results(args) -> int:
    from . import api
    from . import report
    from .registry import Registry
    from .runner import make_tracker

    reg = Registry.load()
    s = api.suite(args.suite, reg)
    tracker = make_tracker(reg, s, args.tracking_uri)
    fn = {"md": report.results_markdown, "csv": report.results_csv, "json": report.results_json}[args.format]
    print(fn(tracker, s.name))
    return 0


def cmd_ui(args) -> int:
    import subprocess

    print(f"MLflow UI on http://127.0.0.1:{args.port} ({args.tracking_uri}); Ctrl-C to stop")
    return subprocess.call([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", args.tracking_uri,
                            "--host", "127.0.0.1", "--port", str(args.port)])


def cmd_datasets(args) -> int:
    from .errors import ConfigError
    from .registry import Registry

    reg = Registry.load()
    if args.action == "list":
        for name in reg.names("dataset"):
            print(f"{name:12s} {reg.get('dataset', name).description}")
        return 0
    if not args.name:
        raise ConfigError("datasets info needs a NAME: matchbench datasets info movielens")
    spec = reg.get("dataset", args.name)
    print(f"{spec.name}: {spec.description}")
    for p in spec.params:
        print(f"  {p.describe()}")
    card = Path("datasets") / f"{spec.name}.md"
    if card.exists():
        print()
        print(card.read_text())
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "report": cmd_report, "results": cmd_results, "ui": cmd_ui,
            "datasets": cmd_datasets}


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
