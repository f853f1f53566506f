"""Stopping a pool's jobs when the process running it is stopped (Ctrl-C, SIGTERM): the job in one of its
threads, and its worker processes. Used by the pipeline's pool (flows.local_pool) and the sweep's."""

from __future__ import annotations

import os
from typing import Any


def interrupt_thread(ident: int, error: type[BaseException]) -> bool:
    """Raise ``error`` in thread ``ident`` of this process, as Ctrl-C raises KeyboardInterrupt in the main thread:
    at its next Python instruction (a torch kernel running then finishes first). Python's documented C API
    (PyThreadState_SetAsyncExc); True when the thread was found."""
    import ctypes

    return ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(error)) == 1


def end_worker_processes(error: BaseException, running: list[Any]) -> None:
    """This process was stopped by ``error`` (Ctrl-C, SIGTERM) while the worker processes of its pool ran the
    jobs whose futures are ``running``: stop their jobs (their runs end KILLED), then end the workers.

    On SIGTERM to this process alone the workers get a Ctrl-C (a terminal's Ctrl-C reached them already: it
    signals the whole process group). Once their jobs have answered, the workers are terminated: Prefect's
    process pool re-raises a job's KeyboardInterrupt in its manager thread, which dies of it, and its idle
    workers would then keep this process from exiting. Nothing happens for an ``error`` that is a failure."""
    import multiprocessing
    import signal

    from prefect.futures import wait

    if isinstance(error, Exception):
        return
    workers = multiprocessing.active_children()  # the pool's worker processes
    if type(error) is not KeyboardInterrupt:
        for child in workers:
            os.kill(child.pid, signal.SIGINT)
    wait(running, timeout=3)  # their futures may never resolve once the manager thread died: a short grace
    for child in workers:
        child.terminate()
    for child in workers:
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
