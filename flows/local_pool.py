"""The pipeline's families (and the suite) in parallel worker processes on this machine.

Prefect's ProcessPoolTaskRunner runs one job per process, each with an equal share of the CPU cores as
torch threads. Why processes and not threads: the small MLPs and DCGANs of the quick profile hardly
scale with torch threads (two threads train 1.1-1.6x faster than one on the 2-core machine), while two
single-threaded processes use both cores fully; threads in one process would also share torch's global
random state, which seeded training needs to itself. Measured in docs/benchmarks.md ("The default run").
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.params import DatasetRef, FamilySummary, PipelineParams, RunRef, TrainParams
from genlib.evaluation.profiles import EvalProfile


def worker_count(params: PipelineParams, device: Any) -> int:
    """``params.workers``, else one process per CPU core on the CPU and one on an accelerator (its
    kernels already use the whole device), never more than there are jobs (the families and the suite)."""
    from flows.forkserver import local_worker_count

    return local_worker_count(len(params.models) + int(params.suite), params.workers, device.type == "cpu")


def _init_worker(threads: int) -> None:
    """Worker initializer: this process's share of the cores as torch's and the BLAS libraries' threads,
    and MLflow's per-model INFO lines kept quiet as in the parent (``genlib pipeline`` quiets its own)."""
    import logging

    import scipy.linalg  # noqa: F401 - loads the BLAS scikit-learn's PCA and probes use, so it is limited too
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    # numpy's and scipy's BLAS (and OpenMP) pools start one thread per core: with a worker per core that
    # oversubscribes the machine whenever two workers reach scikit-learn at once.
    threadpool_limits(limits=threads)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)  # "pip version" under uv


@task(cache_policy=NO_CACHE, task_run_name="family-{family}")
def family_job(family: str, params: PipelineParams, dataset: DatasetRef, train_params: TrainParams,
               parent_run_id: str) -> FamilySummary:
    """Train, evaluate and register ``family`` in this worker, its runs nested under the pipeline run.

    A tracking server that no longer answers is checked first: a family that did not start says so."""
    from flows.family import run_family
    from flows.train import train_family
    from genlib.tracking import TrackingUnavailableError, check_tracking, resolve_tracking
    from genlib.tracking.runs import nested_under

    try:
        check_tracking(resolve_tracking(), timeout=5)
    except TrackingUnavailableError as err:
        return FamilySummary(family=family, error=f"not started: {err}")
    with nested_under(parent_run_id):
        return run_family(family, params, dataset, lambda: train_family(train_params, dataset.digest))


@task(cache_policy=NO_CACHE)
def suite_job(dataset: DatasetRef, evaluation: EvalProfile, device: str, parent_run_id: str) -> RunRef:
    """The suite's own experiments (the ``suite`` run) in this worker, nested under the pipeline run."""
    from flows.common import run_or_reuse
    from flows.evaluate import suite_report
    from genlib.tracking.runs import nested_under

    with nested_under(parent_run_id):
        return run_or_reuse(suite_report, dataset, evaluation, device)


def training_cost(spec: Any) -> float:
    """A relative cost of training ``spec`` on a data set: the FLOPs of one loss evaluation per image (the
    products and convolutions of a 2-image batch, genlib.models.flops), times 3 for autograd's backward
    pass, times epochs. Only the order of these numbers is used (every family trains on the same images)."""
    import torch

    from genlib.models import get_model
    from genlib.models.flops import FlopCounter

    model = get_model(spec.model.model_name, spec.model)
    x = torch.zeros(2, *spec.model.image_shape)
    y = torch.zeros(2, dtype=torch.long)
    with torch.no_grad(), FlopCounter() as counter:
        model.loss(x, y)
    per_image = counter.flops / 2 * (3 if model.uses_autograd else 1)
    return per_image * spec.train.epochs


def longest_first(families: list[str], train_params: dict[str, TrainParams]) -> list[str]:
    """The order jobs start in, so that short ones fill the end: by :func:`training_cost`, largest first
    (ordering by epochs alone started the gan, 10 epochs of convolutions, after the 20-epoch rbm that
    trains in a third of its time, and one core idled 15 s at the end of the default run)."""
    costs = {f: training_cost(train_params[f].spec) if train_params[f].spec is not None else 0.0
             for f in families}
    return sorted(families, key=lambda f: -costs[f])


def _warm_up(data: Any, tracking_uri: str) -> None:
    """What every job of a worker needs before it computes: its imports (done already in a worker forked
    from the fork server), the tracking store opened, the data set in the per-process memo. Run once per
    worker by :func:`prestarted_workers`; an error here is left for the job that meets it to report."""
    import importlib

    from flows.common import load_data
    from flows.forkserver_pool import PRELOAD
    from genlib.tracking.store import configure_tracking, store_identity

    for name in PRELOAD:
        importlib.import_module(name)
    configure_tracking(tracking_uri, check=False)  # the parent's store (it may predate the fork server's env)
    store_identity()
    load_data(data)


_prestarted: dict[int, Any] = {}  # worker count -> an entered ProcessPoolTaskRunner no flow has taken yet


def _new_runner(workers: int) -> Any:
    from flows.forkserver_pool import new_runner

    return new_runner(workers, _init_worker, (max(1, (os.cpu_count() or 1) // workers),))


@contextlib.contextmanager
def prestarted_workers(params: PipelineParams, device: Any) -> Iterator[None]:
    """Start the worker processes the pipeline will use now, each importing the flows and loading the data,
    so that this happens while the caller waits for something else (``genlib pipeline``: a new Prefect
    server's database set-up, about 15 s of one core on a fresh clone, while the other core idled). The
    pipeline's :func:`run_in_processes` takes them over; whatever it did not take is stopped on exit."""
    from genlib.tracking.store import resolve_tracking

    workers = worker_count(params, device)
    tracking_uri = resolve_tracking().uri
    if workers < 2:
        yield
        return
    runner = _new_runner(workers)
    runner.__enter__()
    _prestarted[workers] = runner
    try:
        # Straight to the executor, not runner.submit: a task submission would fix the runner's Prefect
        # context (which it caches at its first submit) before the pipeline's flow run exists.
        for _ in range(workers):  # one spawned process per submission while none is idle
            runner._executor.submit(_warm_up, params.data, tracking_uri)
        yield
    finally:
        if _prestarted.pop(workers, None) is runner:
            runner.__exit__(None, None, None)


_stopping: list[threading.Thread] = []  # pools whose workers are still exiting


def run_in_processes(params: PipelineParams, dataset: DatasetRef, train_params: dict[str, TrainParams],
                     parent_run_id: str, workers: int, with_suite: bool) -> tuple[list[FamilySummary], RunRef | None]:
    """Every family's job and (``with_suite``) the suite's on ``workers`` processes (the pre-started ones
    when :func:`prestarted_workers` made them); returns the family summaries in ``params.models`` order and
    the suite's run. The suite goes first: it is the longest job, and a long job started last would leave
    one core idle at the end.

    Once every job has answered, the workers are stopped in a background thread (their interpreters take
    1.2-2.7 s to exit, measured) while the caller goes on; :func:`wait_for_stopped_workers` waits for it."""
    from prefect.futures import as_completed

    runner = _prestarted.pop(workers, None) or _new_runner(workers).__enter__()
    try:
        jobs = [(None, suite_job, {"dataset": dataset, "evaluation": params.evaluation(), "device": params.device,
                                      "parent_run_id": parent_run_id})] if with_suite else []
        jobs += [(f, family_job, {"family": f, "params": params, "dataset": dataset, "train_params": train_params[f],
                                  "parent_run_id": parent_run_id}) for f in longest_first(params.models, train_params)]
        # A job is handed to the pool only when a worker is free: submitted all at once, they reached the
        # workers in an order Prefect's submitting threads shuffle (the 20 s conv-ae went last in one run
        # and a core idled 17 s), while this keeps the longest-first order exactly.
        pending, running, done = list(jobs), {}, {}
        while pending or running:
            while pending and len(running) < workers:
                name, job, args = pending.pop(0)
                running[runner.submit(job, args)] = name
            finished = next(as_completed(list(running)))
            done[running.pop(finished)] = finished
        summaries = []
        for family in params.models:
            try:
                summaries.append(done[family].result())
            except Exception as err:  # the worker process itself died: this family failed, the others go on
                summaries.append(FamilySummary(family=family, error=f"{type(err).__name__}: {err}".splitlines()[0]))
        suite_run = done[None].result() if with_suite else None
    except BaseException:
        runner.__exit__(None, None, None)
        raise
    stopper = threading.Thread(target=runner.__exit__, args=(None, None, None), name="genlib-stop-workers")
    stopper.start()
    _stopping.append(stopper)
    return summaries, suite_run


def wait_for_stopped_workers() -> None:
    """Block until the worker processes :func:`run_in_processes` left exiting are gone (and Prefect's
    forwarder has passed on their last events)."""
    while _stopping:
        _stopping.pop().join()
