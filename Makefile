# Two commands set everything up on a machine with python3, pip and make:
#   make run    the whole pipeline on real MNIST (a seeded 10,000-image training subset, CPU, a few minutes)
#   make test   the test suite (slow tests skipped; `make test-slow` runs them too)
SHELL := /bin/bash
PYTHON ?= python3
# Use uv from PATH when there is one; otherwise bootstrap it with pip and run it as a module.
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --frozen
# make run's training and validation subsets of MNIST (seeded; the test set is the standard 10,000 images).
RUN_TRAIN_IMAGES ?= 10000
RUN_VAL_IMAGES ?= 2000

.PHONY: help uv sync run test test-slow bench lint clean up down

help:
	@echo "make run | make test | make test-slow | make bench"

uv:
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		$(PYTHON) -m pip install --quiet --disable-pip-version-check uv || \
		$(PYTHON) -m pip install --quiet --disable-pip-version-check --user uv

sync: uv
	UV_COMPILE_BYTECODE=1 $(UV) sync --frozen

run: sync
	$(RUN) genlib pipeline --dataset mnist --n-train $(RUN_TRAIN_IMAGES) --n-val $(RUN_VAL_IMAGES) --profile quick --device cpu

# The scheduled stack on this machine (Prefect + MLflow servers on 127.0.0.1, cpu/gpu workers, the
# nightly deployment); `make down` stops what `make up` started. Options: make up UP_ARGS="--host ...";
# UP_ARGS="--prefect-db postgresql" keeps Prefect's database in a PostgreSQL cluster (docs/deploy.md).
up: sync
	$(RUN) genlib stack up $(UP_ARGS)

down:
	$(RUN) genlib stack down

test: sync
	$(RUN) pytest -q

test-slow: sync
	$(RUN) pytest -q --runslow

bench: sync
	$(RUN) python -m bench.throughput --quick

clean:
	rm -rf .pytest_cache mlflow/mlruns mlflow/mlflow.db mlflow/artifacts
