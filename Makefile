# Two commands set everything up on a machine with python3, pip and make:
#   make run    the whole pipeline on the embedded digits data set (CPU, a few minutes)
#   make test   the test suite (slow tests skipped; `make test-slow` runs them too)
SHELL := /bin/bash
PYTHON ?= python3
# Use uv from PATH when there is one; otherwise bootstrap it with pip and run it as a module.
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --frozen --all-groups

.PHONY: help uv sync run test test-slow bench lint clean

help:
	@echo "make run | make test | make test-slow | make bench"

uv:
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		$(PYTHON) -m pip install --quiet --disable-pip-version-check uv || \
		$(PYTHON) -m pip install --quiet --disable-pip-version-check --user uv

sync: uv
	$(UV) sync --frozen --all-groups

run: sync
	$(RUN) genlib pipeline --dataset digits --profile quick --device cpu

test: sync
	$(RUN) pytest -q

test-slow: sync
	$(RUN) pytest -q --runslow

bench: sync
	$(RUN) python -m bench.throughput --quick

clean:
	rm -rf .pytest_cache mlflow/mlruns mlflow/mlflow.db mlflow/artifacts
