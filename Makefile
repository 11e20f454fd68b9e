# `make demo` and `make test` each do all set-up on a fresh machine, then run.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: demo test test-fast bench reliability system-deps clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev,distributed,export,bench]'
	touch $(STAMP)

system-deps:
	@bash .ci/system-deps.sh

demo: system-deps $(STAMP)
	$(VENV)/bin/evograph run runs/configs/digits.toml

test: system-deps $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n 2

# the full reliability tier (the quick tier runs inside `make test`), figures printed at the end
reliability: system-deps $(STAMP)
	EVOGRAPH_RELIABILITY=full $(PY) -m pytest -q -p no:xdist tests/reliability

bench: system-deps $(STAMP)
	$(PY) benchmarks/toy_bitstring.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
