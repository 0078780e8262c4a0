"""Mutation testing per module (`make mutation`): mutmut 3 on one module at a time, with only that module's tests.

Why per module: a mutant is worth running only against the tests meant to catch it, so each module gets its own
scratch copy of the project under .mutation/<target>/ (mutmut reads its settings from the working directory's
pyproject.toml; the copy's [tool.mutmut] table names that module and its test files) and mutmut runs there. The
copy is taken fresh each time, so edits in the working tree are measured as they are now.

    .venv/bin/python scripts/mutation.py                 # every target, smallest first
    .venv/bin/python scripts/mutation.py metrics losses  # some targets
    .venv/bin/python scripts/mutation.py --list          # the targets, their modules and test files

Prints a table (target, mutants, killed, survived, timeout, no tests, score = killed / mutants) and writes the
surviving mutants' diffs to .mutation/<target>/survivors.txt and every figure to .mutation/summary.json.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
# What the tests need besides the packages and tests (fixtures and suites are read relative to tests/).
COPY = ["harness", "plugins", "tests", "datasets", "suites"]
# Test files that any target may use when they exist (the survivor tests, the mutation kills). The hypothesis
# property tests are left out: random draws make a mutant's verdict change from run to run, and they take minutes.
SHARED_TESTS = ["tests/test_mutation_kills.py", "tests/test_survivors.py"]
# Per-module kill files (tests/test_kills_<module>.py) join the shared selection of the targets they name.
KILL_FILES = {"planners": ["tests/test_kills_planners.py", "tests/test_kills_dual_fit.py",
                           "tests/test_kills_dual_solvers.py", "tests/test_kills_dual_repair.py"],
              "world_truth": ["tests/test_kills_world.py", "tests/test_kills_world_truth.py"],
              "tracker": ["tests/test_kills_misc.py"], "statistics": ["tests/test_kills_misc.py"],
              "ctr": ["tests/test_kills_misc.py"], "ranking": ["tests/test_kills_misc.py"],
              "evaluate": ["tests/test_kills_evaluate.py"], "splits": ["tests/test_kills_splits.py"]}
# What --recheck runs against the survivors: the kill tests (test_survivors.py was in every run's selection already).
RECHECK_TESTS = ["tests/test_mutation_kills.py"]


@dataclass
class Target:
    name: str
    modules: list[str]
    tests: list[str]
    note: str = ""
    # mutmut mutant-name globs ("harness.ctr.x_auc*"): only these functions' mutants are run; empty: the whole module
    functions: list[str] = field(default_factory=list)
    shared: list[str] = field(default_factory=lambda: list(SHARED_TESTS))
    deselected: list[str] = field(default_factory=list)

    def test_files(self) -> list[str]:
        extra = self.shared + KILL_FILES.get(self.name, [])
        return self.tests + [t for t in extra if (ROOT / t).exists() and t not in self.tests]


# Smallest / fastest first. Each target's tests are the unit tests of that module (end-to-end suites would make
# every surviving mutant cost a full run).
TARGETS = [
    Target("losses", ["plugins/losses/pairwise.py", "plugins/losses/inbatch.py"], ["tests/test_inbatch_losses.py"]),
    Target("metrics", ["plugins/metrics/ranking.py"], ["tests/test_metrics.py", "tests/test_conformance.py"]),
    Target("statistics", ["harness/report/statistics.py"], ["tests/test_report.py"]),
    Target("ctr", ["harness/ctr.py"], [f"tests/test_ctr.py::{t}" for t in (
        "test_auc_and_logloss_match_sklearn_with_ties", "test_gauc_by_hand_and_against_per_user_sklearn",
        "test_synthetic_impressions_follow_the_stated_click_model")],
           functions=[f"harness.ctr.x_{f}*" for f in ("auc", "group_auc", "gauc", "logloss", "calibration",
                                                      "ctr_metrics", "truth_ctr_metrics")],
           note="the CTR metrics only (not predict/run_ctr/padded_sequences, which need model training tests)"),
    Target("summary", ["harness/report/summary.py"], ["tests/test_summary.py"],
           note="the terminal summary (`matchbench results --format summary`)"),
    Target("ranking", ["harness/ranking.py"], ["tests/test_ranking.py", "tests/test_metrics.py"]),
    Target("evaluate", ["harness/evaluate.py"], ["tests/test_metrics.py", "tests/test_ranking.py",
                                                 "tests/test_truth_metrics.py"]),
    Target("planners", ["plugins/planners/topk.py", "plugins/planners/greedy.py", "plugins/planners/dual.py",
                        "plugins/planners/roots.py", "plugins/planners/dual_candidates.py"],
           ["tests/test_planners.py", "tests/test_dual_candidates.py"]),
    Target("splits", ["plugins/splits/temporal.py", "plugins/splits/user.py", "plugins/splits/leave_one_out.py",
                      "plugins/splits/next_n_day.py", "plugins/splits/impressions.py"],
           ["tests/test_splits.py", "tests/test_candidates.py"]),
    Target("tracker", ["plugins/trackers/mlflow_tracker.py"], ["tests/test_mlflow_tracker.py"],
           functions=["plugins.trackers.mlflow_tracker.xǁMlflowTrackerǁfinished_hashes*",
                      "plugins.trackers.mlflow_tracker.xǁMlflowTrackerǁ_search*"],
           note="the resume path only: finished_hashes and the run search it uses"),
    Target("world_truth", ["plugins/datasets/world_truth.py", "plugins/datasets/world.py"],
           ["tests/test_synthetic.py", "tests/test_oracle.py", "tests/test_world_scale.py"],
           note="the synthetic world's truth (WorldTruth) and its process (Hawkes times, the mark sampler)"),
]
BY_NAME = {t.name: t for t in TARGETS}

STATUS = {1: "killed", 3: "killed", 37: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", None: "not checked"}


def mutmut_table(target: Target, base: dict) -> str:
    """The [tool.mutmut] table for a target: the repository's table with the module and its tests substituted."""
    conf = dict(base)
    conf["only_mutate"] = target.modules
    conf["pytest_add_cli_args_test_selection"] = target.test_files()
    lines = ["[tool.mutmut]"]
    for key, value in conf.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def without_mutmut_table(text: str) -> str:
    """pyproject.toml's text without its [tool.mutmut] table (up to the next table header)."""
    return re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[)|^\[tool\.mutmut\]\n.*\Z", "", text)


def prepare(target: Target) -> Path:
    """A fresh scratch copy of the project for one target, with that target's mutmut settings."""
    work = WORK / target.name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
    for name in COPY:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, work / name, ignore=ignore)
    text = (ROOT / "pyproject.toml").read_text()
    base = tomllib.loads(text).get("tool", {}).get("mutmut", {})
    failing = failing_shared_tests(work, target)
    if failing:
        print(f"  deselected (failing before any mutation): {' '.join(failing)}", flush=True)
        base["pytest_add_cli_args"] = base.get("pytest_add_cli_args", []) + [f"--deselect={f}" for f in failing]
    target.deselected = failing
    (work / "pyproject.toml").write_text(without_mutmut_table(text).rstrip() + "\n\n" + mutmut_table(target, base))
    return work


def failing_shared_tests(work: Path, target: Target) -> list[str]:
    """Tests of the shared files that fail on the unmutated copy (written ahead of their fix): mutmut needs a green
    baseline, so these are deselected and named in the output rather than stopping the whole target."""
    shared = [t for t in target.test_files() if t not in target.tests]
    if not shared:
        return []
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:randomly", *shared], cwd=work,
                          capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.M)


def mutmut_command(workers: int, functions: list[str]) -> list[str]:
    return ["nice", "-n", "10", str(Path(sys.executable).parent / "mutmut"), "run", "--max-children", str(workers),
            *functions]


def run_target(target: Target, workers: int, timeout: float) -> dict:
    """Run mutmut for one target; its figures, with every non-killed mutant's diff."""
    work = prepare(target)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1")
    env.pop("MUTANT_UNDER_TEST", None)
    start = time.monotonic()
    with open(work / "mutmut.log", "w") as log:
        try:
            proc = subprocess.run(mutmut_command(workers, target.functions), cwd=work, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    wall = time.monotonic() - start
    codes = {}
    for module in target.modules:
        meta = work / "mutants" / (module + ".meta")
        if meta.exists():
            found = json.loads(meta.read_text())["exit_code_by_key"]
            codes[module] = {k: v for k, v in found.items()
                             if not target.functions or any(fnmatch.fnmatch(k, f) for f in target.functions)}
    diffs = survivor_diffs(work, [k for c in codes.values() for k, v in c.items() if STATUS.get(v) != "killed"])
    with open(work / "survivors.txt", "w") as out:
        for name, diff in diffs.items():
            out.write(f"## {name}\n{diff}\n\n")
    result = {"target": target.name, "modules": target.modules, "tests": target.test_files(),
            "deselected": target.deselected, "rc": rc,
            "wall_s": round(wall, 1), "codes": codes, "diffs": diffs,
            "command": f"cd .mutation/{target.name} && " + shlex.join(mutmut_command(workers, target.functions)),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    (work / "result.json").write_text(json.dumps(result, indent=1))
    return result


def survivor_diffs(work: Path, names: list[str]) -> dict[str, str]:
    """mutmut's diff of each named mutant (read in the scratch copy, where mutmut keeps its mutants)."""
    if not names:
        return {}
    code = ("import json, sys\nfrom mutmut.mutation.diff_apply import get_diff_for_mutant\n"
            "out = {}\nfor n in json.loads(sys.stdin.read()):\n"
            "    try:\n        out[n] = get_diff_for_mutant(n)\n"
            "    except Exception as e:\n        out[n] = f'(no diff: {e})'\n"
            "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, input=json.dumps(names), capture_output=True,
                          text=True)
    if proc.returncode:
        return {n: "(no diff: " + proc.stderr.strip().splitlines()[-1] + ")" for n in names}
    return json.loads(proc.stdout)


# Runs inside a target's ./mutants copy: imports the tests once, then forks one child per mutant (as mutmut does),
# each with MUTANT_UNDER_TEST set, and prints {mutant: pytest exit code} (-14: stopped by the per-mutant alarm).
RECHECK_CHILD = """
import json, os, signal, sys
import pytest
names, files, limit = json.loads(sys.stdin.read()), sys.argv[2:], int(sys.argv[1])
args = ["-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *files]
null = os.open(os.devnull, os.O_WRONLY)
saved = os.dup(1), os.dup(2)
os.dup2(null, 1), os.dup2(null, 2)
pytest.main(["--collect-only", *args])
out = {}
for name in names:
    pid = os.fork()
    if pid == 0:
        os.environ["MUTANT_UNDER_TEST"] = name
        signal.alarm(limit)
        os._exit(int(pytest.main(args)))
    out[name] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
os.dup2(saved[0], 1)
print(json.dumps(out))
"""


def recheck(name: str, result: dict, limit_s: int = 120) -> dict[str, str]:
    """Run each mutant that survived the last mutmut run of a target against the current kill tests, in that run's
    ./mutants copy: {mutant: "killed" | "survived" |
    "timeout"}."""
    mutants = WORK / name / "mutants"
    files = [t for t in RECHECK_TESTS + KILL_FILES.get(name, []) if (ROOT / t).exists()]
    for f in files:
        shutil.copy2(ROOT / f, mutants / f)
    todo = [k for codes in result["codes"].values() for k, v in codes.items() if STATUS.get(v) != "killed"]
    if not todo:
        return {}
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("MUTANT_UNDER_TEST", None)
    proc = subprocess.run(["nice", "-n", "10", sys.executable, "-c", RECHECK_CHILD, str(limit_s), *files],
                          cwd=mutants, env=env, input=json.dumps(todo), capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"recheck of {name} failed: {proc.stderr.strip()[-2000:]}")
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    return {k: "killed" if c in (1, 3) else "timeout" if c == -14 else "survived" for k, c in codes.items()}


def rows(result: dict) -> list[dict]:
    """Per-module counts for a target's result (a module measured on some functions only is marked with *)."""
    out = []
    for module, codes in result["codes"].items():
        counts = {"killed": 0, "survived": 0, "timeout": 0, "no tests": 0, "other": 0, "new kills": 0}
        for key, code in codes.items():
            status = STATUS.get(code, "other")
            if result.get("rechecked", {}).get(key) == "killed":
                status, counts["new kills"] = "killed", counts["new kills"] + 1
            counts[status if status in counts else "other"] += 1
        total = sum(counts.values()) - counts["new kills"]
        label = module + ("*" if BY_NAME[result["target"]].functions else "")
        out.append({"module": label, "mutants": total, **counts,
                    "score": round(counts["killed"] / total, 3) if total else None})
    return out


def print_table(results: list[dict]) -> None:
    head = (f"{'module':45} {'mutants':>7} {'killed':>6} {'survived':>8} {'timeout':>7} {'no tests':>8} "
            f"{'score':>6} {'new kills':>9}")
    print(head)
    print("-" * len(head))
    for result in results:
        for r in rows(result):
            score = f"{r['score']:.1%}" if r["score"] is not None else "-"
            print(f"{r['module']:45} {r['mutants']:7} {r['killed']:6} {r['survived']:8} {r['timeout']:7} "
                  f"{r['no tests']:8} {score:>6} {r['new kills']:9}")
    print("new kills: survivors of the mutmut run killed by the current kill/survivor tests (--recheck)")
    for result in results:
        print(f"# {result['target']}: {result['command']}  (tests: {' '.join(result['tests'])}; "
              f"{result['wall_s']} s, rc {result['rc']}, {result['date']})")


def load_summary() -> dict:
    """Every target's last run, with its recheck (.mutation/<target>/recheck.json) when it is of that run."""
    path = WORK / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    for own in WORK.glob("*/result.json"):  # each run also leaves its result in its own folder
        found = json.loads(own.read_text())
        if found["target"] not in summary or found["date"] > summary[found["target"]]["date"]:
            summary[found["target"]] = found
    for name, result in summary.items():
        extra = WORK / name / "recheck.json"
        if extra.exists():
            found = json.loads(extra.read_text())
            if found.get("run_date") == result.get("date"):
                result.update(rechecked=found["rechecked"], recheck_date=found["recheck_date"])
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("targets", nargs="*", help=f"targets to run (default: all): {', '.join(BY_NAME)}")
    p.add_argument("--workers", type=int, default=2, help="mutmut's --max-children (default 2)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per target before it is stopped")
    p.add_argument("--only", nargs="+", metavar="MUTANT",
                   help="run only these mutants (mutmut names or globs, e.g. the survivors listed in "
                        "reports/quality.md prefixed with their module: plugins.planners.dual.x__root__mutmut_4); "
                        "the code must be unchanged since the run that listed them, so their numbers still apply")
    p.add_argument("--list", action="store_true", help="print the targets and exit")
    p.add_argument("--table", action="store_true", help="print the table of the last runs (.mutation/summary.json)")
    p.add_argument("--recheck", action="store_true",
                   help="rerun the last run's survivors of each target against the current kill tests "
                        "(one process, a fork per mutant)")
    args = p.parse_args(argv)
    if args.only:  # `--only A B planners` reads the target as a mutant: take target names back out of the list
        args.targets += [m for m in args.only if m in BY_NAME]
        args.only = [m for m in args.only if m not in BY_NAME]
        if len(args.targets) != 1 or not args.only:
            p.error("--only runs named mutants of one target: give exactly one target and at least one mutant, "
                    "e.g. planners --only 'plugins.planners.roots*'")
    unknown = [t for t in args.targets if t not in BY_NAME]
    if unknown:
        p.error(f"unknown target(s) {unknown}; choose from {list(BY_NAME)}")
    if args.list:
        for t in TARGETS:
            print(f"{t.name:12} {' '.join(t.modules)}\n{'':12} tests: {' '.join(t.test_files())}")
        return 0
    summary = load_summary()
    if args.table:
        print_table([summary[t.name] for t in TARGETS if t.name in summary])
        return 0
    if args.recheck:
        for name in args.targets or [t.name for t in TARGETS if t.name in summary]:
            print(f"rechecking {name} ...", flush=True)
            found = {"run_date": summary[name]["date"], "rechecked": recheck(name, summary[name]),
                     "recheck_date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
            (WORK / name / "recheck.json").write_text(json.dumps(found, indent=1))
            summary = load_summary()
        print_table([summary[t.name] for t in TARGETS if t.name in summary])
        return 0
    results = []
    for name in args.targets or list(BY_NAME):
        print(f"mutating {name} ...", flush=True)
        target = BY_NAME[name]
        if args.only:
            target.functions = list(args.only)
        result = run_target(target, args.workers, args.timeout)
        results.append(result)
        summary = load_summary()
        summary[name] = result  # a new run replaces the target's entry (an older recheck no longer applies)
        WORK.mkdir(exist_ok=True)
        (WORK / "summary.json").write_text(json.dumps(summary, indent=1))
        if result["rc"] != 0:
            print(f"  mutmut stopped (rc {result['rc']}): see .mutation/{name}/mutmut.log", flush=True)
        print_table([result])
    print()
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
