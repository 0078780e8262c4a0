# Two commands on a fresh clone: `make demo` (set up, run the quickstart, write its report) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.matchbench-installed

.PHONY: setup demo test test-slow bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt examples/matchbench-example-plugin/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[test,baselines]" -e examples/matchbench-example-plugin
	touch $(STAMP)

demo: setup
	$(VENV)/bin/matchbench run suites/quickstart.yaml
	$(VENV)/bin/matchbench results suites/quickstart.yaml

test: setup
	$(VENV)/bin/ruff check .
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

test-slow: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m slow

bench: setup
	$(PY) benchmarks/ranking.py --quick
	$(PY) benchmarks/bpr_fit.py
	$(PY) benchmarks/implicit_overhead.py

clean:
	rm -rf $(VENV) .matchbench_cache mlruns.db mlartifacts
