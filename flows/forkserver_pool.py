"""Prefect's process-pool task runner with its workers forked from one process that imported their modules.

``ProcessPoolTaskRunner`` starts every worker with multiprocessing's ``spawn``: a fresh interpreter that
imports torch, prefect, mlflow, scikit-learn and torch._dynamo again, about 9.5 s of one core per worker on
the 2-core machine (measured: two workers warming up side by side took 9.5 s each). With ``forkserver``
one server process imports them once (``set_forkserver_preload``) and every worker is a fork of it, so
the second worker costs nothing to start. The server process has imported modules but started no
threads, so forking it is safe (forking a process with Prefect's or torch's threads running is not,
which is why Prefect does not fork).

Everything else is Prefect's: only the start method differs. ``__enter__`` repeats
``ProcessPoolTaskRunner.__enter__`` of prefect 3.8.8 (the version ``uv.lock`` pins) with another
multiprocessing context, since Prefect names ``spawn`` inside it; the end-to-end test in ``tests/test_flows.py``
runs tasks through it in a flow, so a Prefect upgrade that changes these internals fails there first.
"""

from __future__ import annotations

import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, _initialize_process_pool_worker

# The fork server itself lives in flows.forkserver, which imports no prefect: the CLI starts it first thing.
from flows.forkserver import PRELOAD, _context, available, start_fork_server  # noqa: F401 - re-exported


class ForkserverTaskRunner(ProcessPoolTaskRunner):
    """``ProcessPoolTaskRunner`` whose workers are forked from a server process that preloaded ``PRELOAD``."""

    def __enter__(self) -> ForkserverTaskRunner:
        TaskRunner.__enter__(self)  # ProcessPoolTaskRunner's own __enter__ is repeated below, bar the context
        mp_context = _context()
        self._subprocess_message_queue = mp_context.Queue()
        self._message_forwarding_thread = threading.Thread(
            target=self._forward_subprocess_messages, name="ProcessPoolTaskRunnerMessageForwarder", daemon=True)
        self._message_forwarding_thread.start()
        try:
            self._executor = ProcessPoolExecutor(
                max_workers=self._max_workers, mp_context=mp_context, initializer=_initialize_process_pool_worker,
                initargs=(self._subprocess_message_queue, getattr(self, "_initializer", None),
                          getattr(self, "_initargs", ())))
            self._resolver_executor = ThreadPoolExecutor(max_workers=self._max_workers)
        except Exception:
            if self._executor is not None:
                self._executor.shutdown(cancel_futures=True, wait=True)
                self._executor = None
            self._stop_message_forwarding()
            raise
        return self


def new_runner(workers: int, initializer: Any, initargs: tuple[Any, ...]) -> ProcessPoolTaskRunner:
    """A task runner of ``workers`` processes: forked from a fork server where there is one, else spawned."""
    cls = ForkserverTaskRunner if available() else ProcessPoolTaskRunner
    return cls(max_workers=workers, initializer=initializer, initargs=initargs)
