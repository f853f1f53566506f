"""Where and how a pipeline runs: :class:`ExecutionPlan`, resolved once at the entry point.

The entry point is ``genlib pipeline`` (from its options and the environment), or, for a pipeline run
started by a schedule, the flow itself when its parameters carry no plan. Everything below reads the
plan and decides nothing again. Imports neither prefect nor mlflow (the flows import this, not back).
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Dispatch = Literal["auto", "local", "deployment"]


class ExecutionPlan(BaseModel):
    """Device, local worker processes, torch threads per worker, and where training is dispatched.

    ``device`` is resolved, never "auto". "auto" has one meaning (genlib.training.resolve_device):
    ``$GENLIB_DEVICE`` when set, else CUDA when torch sees one, else the CPU.

    ``workers``: jobs (families, suite sections) run at once on this machine; 1 runs every job in the
    pipeline's own process, more start a pool of that many slots: a thread of the pipeline's process and
    ``workers - 1`` worker processes (flows/local_pool.py). Default: one per CPU core on the CPU, one on
    an accelerator (its kernels already use the whole device), never more than there are jobs, and one
    when training goes to the deployment. ``threads``: torch's and the BLAS libraries' threads in each
    pool slot, the cores shared out equally (running every job itself, the pipeline's process keeps torch's
    default).

    ``dispatch``: "local" (train here: in-process or on the pool), "deployment" (each training is a run of
    the train deployment, on its pool's workers; the device there is the worker's own "auto"), or "auto"
    until the pipeline flow settles it with :meth:`settle` (it needs the Prefect API: the deployment when
    it exists and a worker of its pool is online, else local).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: Literal["cpu", "cuda", "mps"] = Field(description="where local jobs compute (resolved)")
    workers: int = Field(ge=1, description="jobs at once on this machine; 1: in the pipeline's process")
    threads: int = Field(ge=1, description="torch and BLAS threads in each pool slot")
    dispatch: Dispatch = Field(description="where training runs; auto until the pipeline flow settles it")

    @property
    def mode(self) -> Literal["pool", "in-process", "deployment", "undecided"]:
        """How the families run: a local pool, one after another in this process, on the deployment's
        workers, or not known until :meth:`settle`."""
        if self.dispatch == "deployment":
            return "deployment"
        if self.dispatch == "auto":
            return "undecided"
        return "pool" if self.workers > 1 else "in-process"

    def settle(self, deployment: bool) -> ExecutionPlan:
        """This plan with ``dispatch`` decided: the deployment (one local worker: the pipeline's process
        only waits for the deployment's runs and evaluates) or local. A settled plan stays as it is."""
        if self.dispatch != "auto":
            return self
        if deployment:
            return self.model_copy(update={"dispatch": "deployment", "workers": 1, "threads": _cores()})
        return self.model_copy(update={"dispatch": "local"})


def _cores() -> int:
    return os.cpu_count() or 1


def local_workers(jobs: int, workers: int | None, device: str, dispatch: str) -> int:
    """The worker rule of :class:`ExecutionPlan` for ``jobs`` jobs (families plus the suite)."""
    if dispatch == "deployment":
        return 1
    if workers is not None:
        return max(1, min(workers, jobs))
    return max(1, min(_cores(), jobs)) if device == "cpu" else 1


def resolve_plan(device: str = "auto", dispatch: Dispatch = "auto", workers: int | None = None,
                 jobs: int = 1) -> ExecutionPlan:
    """The plan for these options (``device`` "auto" or a name, ``workers`` None for the default) and
    ``jobs`` jobs; raises ConfigError for a device that is unknown or absent here."""
    from genlib.training.config import resolve_device

    from genlib.errors import ConfigError

    resolved = resolve_device(device).type
    if resolved not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device: {resolved} is not one the pipeline runs on; use auto, cpu, cuda or mps")
    count = local_workers(jobs, workers, resolved, dispatch)
    return ExecutionPlan(device=resolved, workers=count, threads=max(1, _cores() // count), dispatch=dispatch)
