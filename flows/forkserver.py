"""The fork server the pipeline's worker processes are forked from (flows/forkserver_pool.py), without prefect.

Starting it costs the caller nothing but a process launch; the server imports ``PRELOAD`` (about 11 s of one
core) beside whatever the caller does next, so ``genlib pipeline`` starts it before its own imports.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from typing import Any

# What the workers' warm-up and jobs import (found by diffing sys.modules before and after them):
# torch.optim's first optimizer imports torch._dynamo (with sympy: about 2.8 s); opening the sqlite
# tracking store imports MLflow's SQLAlchemy stores with Alembic and SQLAlchemy's dialects (1-1.5 s; each
# warming worker spent it while the pipeline waited for its first job); the evaluation imports MLflow's
# pyfunc flavour and scikit-learn's estimators.
PRELOAD = ("flows.pipeline", "flows.train", "flows.evaluate", "flows.local_pool", "torch._dynamo",
           "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store",
           "genlib.tracking.pyfunc", "genlib.evaluation", "sklearn.linear_model", "sklearn.decomposition",
           "sklearn.cluster", "sklearn.pipeline", "sklearn.preprocessing", "torchvision.utils")


def available() -> bool:
    """True where multiprocessing can start a fork server (Linux and macOS, not Windows)."""
    return "forkserver" in multiprocessing.get_all_start_methods()


def _context() -> Any:
    """multiprocessing's fork-server context, its server told to preload ``PRELOAD`` (per parent process: the
    server starts at its first use and serves every pool after it)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


def start_fork_server() -> None:
    """Start the fork server now, so that its imports (about 9.5 s of one core) run beside the caller's own
    start-up rather than after it; the workers a :class:`ForkserverTaskRunner` asks for later are forked
    from it. A no-op where there is none and when it runs already."""
    if available():
        from multiprocessing import forkserver

        _context()
        forkserver.ensure_running()


def local_worker_count(jobs: int, workers: int | None, cpu: bool) -> int:
    """Worker processes for ``jobs`` jobs: ``workers`` when given, else one per CPU core on the CPU and one on an
    accelerator (its kernels already use the whole device), never more than there are jobs."""
    if workers is not None:
        return max(1, min(workers, jobs))
    return max(1, min(os.cpu_count() or 1, jobs)) if cpu else 1


def likely_needed(models: Sequence[str] | None, suite: bool, workers: int | None, device: str, dispatch: str,
                  families: int) -> bool:
    """Whether ``genlib pipeline`` with these raw options will run local worker processes on the CPU, judged before
    anything heavy is imported (``families``: how many the default selection has; "auto" counts as the CPU
    where no GPU device node exists). A wrong yes costs a fork server that nothing uses; the pipeline decides
    again on the validated options."""
    jobs = (len(models) if models else families) + int(suite)
    cpu = device == "cpu" or (device == "auto" and not any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/kfd")))
    return dispatch != "deployment" and cpu and local_worker_count(jobs, workers, cpu) > 1
