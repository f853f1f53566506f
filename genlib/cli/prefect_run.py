"""What a command that runs a flow in this process needs around it: the console's log format, the Prefect API
its flows (and the processes they start) report to, and the queued logs and events sent before a temporary
server stops. Used by ``genlib pipeline`` and ``genlib sweep``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def console_logging() -> None:
    """Prefect's run names in the console lines, and none of MLflow's per-model INFO chatter."""
    import logging

    from prefect.logging.formatters import PrefectFormatter

    fmt = PrefectFormatter(
        format="%(asctime)s | %(levelname)-7s | %(name)s - %(message)s",
        flow_run_fmt="%(asctime)s | %(levelname)-7s | Flow run %(flow_run_name)r - %(message)s",
        task_run_fmt="%(asctime)s | %(levelname)-7s | Task run %(task_run_name)r - %(message)s",
        datefmt="%H:%M:%S",
    )
    for handler in logging.getLogger().handlers:  # the CLI's handler: Prefect leaves the root logger to it
        handler.setFormatter(fmt)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # MLflow warns once per logged model that pip is not installed in a uv environment.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)


@contextlib.contextmanager
def using_api(api_url: str, temporary: bool = False) -> Iterator[None]:
    """Flows in this process, its threads (Prefect's own too: the process pool's event forwarder starts
    with the global settings, not this context's), and the processes it starts, report to ``api_url``.

    ``temporary``: the command's own server, stopped when it ends. Its flow runs then send no heartbeats:
    they tell a server's services that a run crashed, and a temporary server runs none, while each flow
    run's end waits up to a second for its heartbeat thread (which sleeps in one-second steps)."""
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api_url
    refresh_global_settings_context()
    updates = {PREFECT_API_URL: api_url, **({"flows.heartbeat_frequency": None} if temporary else {})}
    try:
        with temporary_settings(updates=updates):
            yield
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
        refresh_global_settings_context()


def drain_prefect_clients(timeout: float = 15.0) -> None:
    """Send the logs and events Prefect still queues (task runs arrive as events) to the server."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # a worker that never started has nothing to send
            worker.drain_all(timeout=timeout, at_exit=False)


@contextlib.contextmanager
def reported_before_stop(api_url: str | None) -> Iterator[list[str]]:
    """Around a flow run on the command's temporary server at ``api_url`` (None: a lasting server, nothing to
    do). On every exit, Ctrl-C included, what Prefect still queues is sent before the server stops, and each
    flow run whose id was appended to the yielded list is waited for until the server recorded its task runs.
    (Interrupted without it, a command took over a minute to exit: Prefect's log worker retried the stopped
    server.)"""
    from genlib.ops.prefect_server import wait_until_recorded

    runs: list[str] = []
    try:
        yield runs
    finally:
        if api_url is not None:
            drain_prefect_clients()
            for run in runs:
                wait_until_recorded(api_url, run)
