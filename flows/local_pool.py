"""The pipeline's families (and the suite's sections) run at once on this machine: :class:`LocalPool`.

The plan's ``workers`` job slots are one thread of this process plus ``workers - 1`` worker processes
(Prefect's ThreadPoolTaskRunner and ProcessPoolTaskRunner, through their public API: the constructors,
``submit`` and futures); how many, and with how many torch threads each, is the pipeline's ExecutionPlan
(genlib.plan), read here, decided nowhere else.

Why processes and not threads alone: the small MLPs and DCGANs of the quick profile hardly scale with torch
threads, while single-threaded jobs use every core fully, and jobs in threads of one process would share
torch's global random state, which seeded training needs to itself. Why one slot is a thread of this
process: a spawned worker imports torch, mlflow and prefect before its first job, while this process has
them already, so its slot starts computing as soon as the data is prepared (and one import less is spent);
this process's main thread only hands out jobs meanwhile, so the job thread has torch to itself. The price:
a job that kills its process outright (a segfault, the OOM killer) takes the pipeline with it in that slot,
where a worker process's death fails only its own family.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.params import DataParams, DatasetRef, FamilySummary, PipelineParams, RunRef, TrainParams
from flows.pool_stop import end_worker_processes, interrupt_thread
from genlib.evaluation.profiles import EvalProfile
from genlib.plan import ExecutionPlan


def limit_threads(threads: int) -> Any:
    """This process's share of the cores: ``threads`` torch and BLAS (and OpenMP) threads; returns a callable
    that puts the previous limits back. numpy's and scipy's BLAS pools start one thread per core: with a job
    per core that oversubscribes the machine whenever two jobs reach scikit-learn at once."""
    import scipy.linalg  # noqa: F401 - loads the BLAS scikit-learn's PCA and probes use, so it is limited too
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    limiter = threadpool_limits(limits=threads)

    def restore() -> None:
        limiter.restore_original_limits()
        torch.set_num_threads(before)

    return restore


def _init_worker(threads: int, data: DataParams, tracking_uri: str) -> None:
    """Worker initializer (run once per worker process as it starts, before its first job): this process's
    share of the cores (:func:`limit_threads`), MLflow's per-model INFO lines kept quiet as in the parent
    (``genlib pipeline`` quiets its own), then the tracking store opened and the data set loaded into the
    per-process memo, so that every job starts computing at once."""
    import atexit
    import gc
    import logging

    import mlflow  # noqa: F401 - its import sets its loggers' levels: import it before quieting them

    # A spawned worker ends like a script (sys.exit): run after the exit handlers registered so far, this
    # spares the shutting-down interpreter collecting torch's, prefect's and mlflow's objects one by one
    # (seconds, which the pipeline waits for before its run ends); the OS frees the memory at once.
    atexit.register(gc.freeze)
    limit_threads(threads)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)  # "pip version" under uv
    try:
        from flows.common import load_data
        from genlib.tracking.store import configure_tracking, store_identity

        configure_tracking(tracking_uri, check=False)  # the parent's store
        store_identity()
        load_data(data)
    except Exception:  # noqa: BLE001 - an initializer that raises breaks the whole pool: the job meeting it reports it
        pass


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


@task(cache_policy=NO_CACHE, task_run_name="suite-job-{section}")
def section_job(dataset: DatasetRef, evaluation: EvalProfile, section: str, device: str, parent_run_id: str) -> RunRef:
    """One suite section's run (genlib.evaluation.suite) in this worker, nested under the pipeline run."""
    from flows.common import run_or_reuse
    from flows.evaluate import section_report
    from genlib.tracking.runs import nested_under

    with nested_under(parent_run_id):
        return run_or_reuse(section_report, dataset, evaluation, section, device)


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
    trains in a third of its time, and one core idled at the end of the default run)."""
    costs = {f: training_cost(train_params[f].spec) if train_params[f].spec is not None else 0.0
             for f in families}
    return sorted(families, key=lambda f: -costs[f])


_stopping: list[threading.Thread] = []  # pools whose workers are still exiting


@task(cache_policy=NO_CACHE, task_run_name="start-worker")
def worker_ready() -> int:
    """Nothing but a worker that has run its initializer: its process id."""
    return os.getpid()


@task(cache_policy=NO_CACHE, task_run_name="start-thread")
def thread_ready() -> int:
    """Nothing but the thread that runs this process's slot: its identifier."""
    return threading.get_ident()


def start_processes(plan: ExecutionPlan, data: DataParams, count: int) -> Any:
    """A started ProcessPoolTaskRunner of ``count`` workers with ``plan.threads`` threads each, every worker
    spawning now (one submission each: Prefect's runner spawns a worker per submission while none is idle),
    so that their imports and data loading run while the caller goes on."""
    from prefect.task_runners import ProcessPoolTaskRunner

    from genlib.tracking.store import resolve_tracking

    runner = ProcessPoolTaskRunner(max_workers=count, initializer=_init_worker,
                                   initargs=(plan.threads, data, resolve_tracking().uri)).__enter__()
    for _ in range(count):
        runner.submit(worker_ready, {})
    return runner


class LocalPool:
    """The job slots of a pool plan: one thread of this process and ``plan.workers - 1`` worker processes.

    :meth:`submit` hands a task to a free slot (this process's thread first: it needs no start-up);
    :meth:`close` stops the worker processes in a background thread (an interpreter takes seconds to exit)
    and gives this process its thread limits back.
    """

    def __init__(self, plan: ExecutionPlan, data: DataParams) -> None:
        from prefect.task_runners import ThreadPoolTaskRunner

        assert plan.mode == "pool" and plan.workers >= 2, plan  # the flow hands a settled plan
        self.processes = start_processes(plan, data, plan.workers - 1)  # first: they spawn while we go on
        self.here = ThreadPoolTaskRunner(max_workers=1).__enter__()
        # Its one thread runs every job of this slot: known, so that an interrupt reaches the job it runs.
        self._thread = self.here.submit(thread_ready, {})
        self._restore_threads = limit_threads(plan.threads)  # the main thread only hands out jobs meanwhile
        self._capacity = {"here": 1, "processes": plan.workers - 1}
        self._running: dict[Any, str] = {}  # future -> its slot

    def free(self) -> bool:
        """Whether a slot is free now."""
        return any(self._load(slot) < n for slot, n in self._capacity.items())

    def _load(self, slot: str) -> int:
        return sum(1 for s in self._running.values() if s == slot)

    def submit(self, job: Any, args: dict[str, Any]) -> Any:
        """Run task ``job`` with ``args`` on a free slot; returns its future. Call only when :meth:`free`."""
        slot = next(s for s, n in self._capacity.items() if self._load(s) < n)
        future = (self.here if slot == "here" else self.processes).submit(job, args)
        self._running[future] = slot
        return future

    def finished(self, future: Any) -> None:
        """``future`` is done: its slot is free again."""
        self._running.pop(future, None)

    def interrupt(self, error: BaseException) -> None:
        """The main thread was stopped by ``error`` (Ctrl-C, SIGTERM): stop the jobs too, so that their runs end
        KILLED and nothing more is registered. The job in this process's thread gets the same interrupt; the
        worker processes are ended by :func:`end_worker_processes`."""
        from genlib.ops.processes import Terminated

        if isinstance(error, Exception):
            return  # a failure, not a stop: the running jobs finish
        if "here" in self._running.values():
            same = KeyboardInterrupt if type(error) is KeyboardInterrupt else Terminated
            interrupt_thread(self._thread.result(), same)
        end_worker_processes(error, [f for f, slot in self._running.items() if slot == "processes"])

    def close(self, wait: bool = False) -> None:
        """Stop the slots: this process's thread now, the worker processes in the background (``wait``: now)."""
        self.here.__exit__(None, None, None)
        self._restore_threads()
        if wait:
            self.processes.__exit__(None, None, None)
            return
        stopper = threading.Thread(target=self.processes.__exit__, args=(None, None, None), name="genlib-stop-workers")
        stopper.start()
        _stopping.append(stopper)


def start_pool(params: PipelineParams) -> LocalPool:
    """The pool of ``params.plan``, its worker processes starting now, so that their imports and data loading
    run while the flow prepares the data and the runs; :func:`run_on_pool` takes it over."""
    assert params.plan is not None
    return LocalPool(params.plan, params.data)


def run_on_pool(params: PipelineParams, dataset: DatasetRef, train_params: dict[str, TrainParams],
                parent_run_id: str, pool: LocalPool | None = None) -> tuple[list[FamilySummary], dict[str, RunRef]]:
    """Every family's job and (``params.suite``) one job per suite section that applies to the data, on the
    :class:`LocalPool` of ``params.plan``; returns the family summaries in ``params.models`` order and
    {section: its run}. The sections go first, in their registered order (the longest first), then the
    families longest first: a long job started last would leave a core idle at the end.

    Once every job has answered, the pool is closed (its worker processes exit in the background while the
    caller goes on; :func:`wait_for_stopped_workers` waits for them)."""
    from prefect.futures import as_completed

    from flows.evaluate import suite_sections

    plan = params.plan
    sections = suite_sections(dataset)[0] if params.suite else []
    assert plan is not None and plan.mode == "pool", plan  # the flow hands a settled plan
    pool = pool or start_pool(params)
    try:
        jobs = [(("suite", s), section_job, {"dataset": dataset, "evaluation": params.evaluation(), "section": s,
                                             "device": plan.device, "parent_run_id": parent_run_id})
                for s in sections]
        jobs += [(f, family_job, {"family": f, "params": params, "dataset": dataset, "train_params": train_params[f],
                                  "parent_run_id": parent_run_id}) for f in longest_first(params.models, train_params)]
        # A job is handed to the pool only when a slot is free: submitted all at once, they reached the
        # workers in an order Prefect's submitting threads shuffle (the long conv-ae went last in one
        # run and a core idled), while this keeps the longest-first order exactly.
        pending, running, done = list(jobs), {}, {}
        while pending or running:
            while pending and pool.free():
                name, job, args = pending.pop(0)
                running[pool.submit(job, args)] = name
            finished = next(as_completed(list(running)))
            pool.finished(finished)
            done[running.pop(finished)] = finished
        summaries = []
        for family in params.models:
            try:
                summaries.append(done[family].result())
            except Exception as err:  # the worker process itself died: this family failed, the others go on
                summaries.append(FamilySummary(family=family, error=f"{type(err).__name__}: {err}".splitlines()[0]))
        section_runs = {}
        for s in sections:
            try:
                section_runs[s] = done[("suite", s)].result()
            except Exception as err:  # noqa: BLE001 - left out here: the parent's evaluate_suite runs it again
                get_run_logger().warning("suite section %s failed in its worker: %s", s, err)
    except BaseException as err:
        pool.interrupt(err)
        pool.close(wait=True)
        raise
    pool.close()
    return summaries, section_runs


def wait_for_stopped_workers() -> None:
    """Block until the worker processes :func:`run_on_pool` left exiting are gone (and Prefect's
    forwarder has passed on their last events)."""
    while _stopping:
        _stopping.pop().join()
