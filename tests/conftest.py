"""Shared pytest set-up: slow tests are skipped unless --runslow is given."""

from __future__ import annotations

import os

import pytest
import torch

# One intra-op thread: the tests' tiny tensors gain nothing from more, and on a 2-core machine
# shared with servers (MLflow, Prefect) extra threads only oversubscribe the cores.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Tests never touch the user's caches or a tracking server they did not start.
os.environ.setdefault("GENLIB_CACHE_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"), "genlib-test-cache"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
