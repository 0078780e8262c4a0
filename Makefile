# Two commands on a fresh clone: `make demo` (set up, run the quickstart, write its report) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.matchbench-installed

.PHONY: setup demo test test-slow bench mutation import-results clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt examples/matchbench-example-plugin/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[test,baselines,ray,server]" -e examples/matchbench-example-plugin
	touch $(STAMP)

demo: setup
	$(VENV)/bin/matchbench run suites/quickstart.yaml
	$(VENV)/bin/matchbench results suites/quickstart.yaml --format summary

test: setup
	$(VENV)/bin/ruff check .
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

test-slow: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m slow

bench: setup
	$(PY) benchmarks/ranking.py --quick
	$(PY) benchmarks/bpr_fit.py
	$(PY) benchmarks/implicit_overhead.py

# Mutation testing, one module at a time against its own tests (minutes per module; not part of `make test`).
# A subset: make mutation MUTATION_TARGETS="metrics losses". Scores and survivors: reports/quality.md.
mutation: setup
	$(VENV)/bin/mutmut --version >/dev/null 2>&1 || $(PY) -m pip install -q "mutmut==3.8.1"
	$(PY) scripts/mutation.py --workers 2 $(MUTATION_TARGETS)

# The committed paper-suite results (results/<suite>/, written by `matchbench export`) into mlruns.db, so reports and
# `matchbench check` run without retraining; cells the store already has FINISHED are left alone.
import-results: setup
	for d in results/*/; do $(VENV)/bin/matchbench import suites/$$(basename $$d).yaml || exit 1; done

clean:
	rm -rf $(VENV) .matchbench_cache mlruns.db mlartifacts
