# `make demo` and `make test` each do all set-up on a fresh machine, then run.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: lint demo test test-fast docs bench reliability system-deps clean

$(STAMP): setup.cfg pyproject.toml
	@bash .ci/disk-check.sh $(VENV) 8
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev,distributed,export,bench,docs]'
	touch $(STAMP)

system-deps:
	@bash .ci/system-deps.sh

demo: system-deps $(STAMP)
	$(VENV)/bin/evograph run runs/configs/digits.toml

test: system-deps $(STAMP)
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -q -n 2 --dist loadgroup
	$(MAKE) --no-print-directory docs

# the linter (rules in pyproject.toml) over the package, its tests and the benchmarks
lint: $(STAMP)
	$(PY) -m ruff check . --exclude .venv,build

# the documentation site (docs/ + the API reference from the docstrings) into build/site;
# --strict: a broken link, a missing page or a docstring griffe cannot read fails the build
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir build/site

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n 2

# the full reliability tier (the quick tier runs inside `make test`), figures printed at the end
reliability: system-deps $(STAMP)
	EVOGRAPH_RELIABILITY=full $(PY) -m pytest -q -p no:xdist tests/reliability

# the quick version of every benchmark, each printing its table (full versions: see the README)
QUICK := benchmarks/results
bench: system-deps $(STAMP)
	$(PY) benchmarks/toy_bitstring.py --seeds 10 --evaluations 1000 --out $(QUICK)/toy_bitstring-quick.json
	$(PY) benchmarks/tabular.py --quick
	$(PY) benchmarks/search.py --quick
	$(PY) benchmarks/tabular_cells.py --quick
	$(PY) benchmarks/search.py --quick --table benchmarks/data/mnist1d-nb201-mini.csv.gz \
		--out $(QUICK)/search_cells-quick.json
	$(PY) benchmarks/published.py --quick
	$(PY) benchmarks/throughput.py --quick
	$(PY) benchmarks/parallel.py --quick
	$(PY) benchmarks/rl_controller.py --quick
	$(PY) benchmarks/learned_optimizer.py --quick --out $(QUICK)/learned_optimizer-quick.json
	$(PY) benchmarks/maml.py --quick
	$(PY) benchmarks/hypernet.py --quick
	$(PY) benchmarks/lineage_report.py --quick --out $(QUICK)/lineage_report-quick.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
