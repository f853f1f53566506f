"""Interrupted runs: mark the stale ones FAILED on the next start, end this process's as KILLED on a signal.

Every run genlib starts carries the host and PID of its process (``genlib.host``, ``genlib.pid``,
:mod:`genlib.tracking.tags`). A run still ``RUNNING`` whose process is gone (same host, and that PID no
longer runs, or runs a process started after the run did: a reused PID) was interrupted, by ``kill -9``,
a crash or a reboot; :func:`mark_stale_runs` sets it ``FAILED`` with a note saying so. Runs of other
hosts are left to a start on their host. :func:`end_runs_on_signal` makes SIGTERM and SIGINT end the
process's own running genlib runs as ``KILLED`` before the previous handler (Prefect's, or Python's)
takes over.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from genlib.ops.processes import pid_alive
from genlib.tracking import tags as T

logger = logging.getLogger(__name__)

_GENLIB_EXPERIMENTS = "name LIKE 'genlib-%'"


def process_start_epoch(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from /proc; None where /proc is not there."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def process_gone(pid: int, run_started_ms: int | None = None) -> bool:
    """True when no process ``pid`` runs here, or the one that does started after the run (PID reused)."""
    if not pid_alive(pid):
        return True
    started = process_start_epoch(pid)
    # /proc times have 10 ms ticks and boot time whole seconds: allow a little slack.
    return started is not None and run_started_ms is not None and started > run_started_ms / 1000 + 2


def _experiments(client: Any, experiment_ids: Iterable[str] | None) -> list[str]:
    if experiment_ids is not None:
        return list(experiment_ids)
    return [e.experiment_id for e in client.search_experiments(filter_string=_GENLIB_EXPERIMENTS)]


def _running_here(client: Any, experiment_ids: list[str], pid: int | None = None) -> list[Any]:
    """RUNNING runs of genlib's kinds tagged with this host (and ``pid`` when given)."""
    if not experiment_ids:
        return []
    clauses = ["attributes.status = 'RUNNING'", f"tags.`{T.HOST}` = '{socket.gethostname()}'"]
    if pid is not None:
        clauses.append(f"tags.`{T.PID}` = '{pid}'")
    runs = client.search_runs(experiment_ids, " and ".join(clauses), max_results=5000)
    return [r for r in runs if r.data.tags.get(T.KIND) in T.KINDS]


def _note(run: Any, text: str) -> str:
    old = run.data.tags.get(T.MLFLOW_RUN_NOTE, "")
    return f"{old}\n\n{text}" if old else text


def mark_stale_runs(experiment_ids: Iterable[str] | None = None, client: Any = None) -> list[str]:
    """Mark FAILED, with a note, every RUNNING genlib run of this host whose process is gone; returns their ids.

    Cheap (one search per call) and safe to call at every start: a run of a live process is never touched.
    """
    from mlflow import MlflowClient

    client = client or MlflowClient()
    marked = []
    for run in _running_here(client, _experiments(client, experiment_ids)):
        pid_text = run.data.tags.get(T.PID, "")
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        if not process_gone(int(pid_text), run.info.start_time):
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        client.set_tag(run.info.run_id, T.MLFLOW_RUN_NOTE, _note(
            run, f"genlib: marked FAILED at {when}: the run was still RUNNING but its process "
                 f"({socket.gethostname()} PID {pid_text}) had gone (killed or crashed)."))
        client.set_terminated(run.info.run_id, "FAILED")
        marked.append(run.info.run_id)
    if marked:
        logger.warning("marked %d interrupted run(s) FAILED: %s", len(marked), ", ".join(m[:8] for m in marked))
    return marked


def kill_own_runs(reason: str, client: Any = None) -> list[str]:
    """End this process's RUNNING genlib runs as KILLED, with a note giving ``reason``; returns their ids."""
    from mlflow import MlflowClient

    client = client or MlflowClient()
    killed = []
    for run in _running_here(client, _experiments(client, None), pid=os.getpid()):
        try:
            client.set_tag(run.info.run_id, T.MLFLOW_RUN_NOTE, _note(run, f"genlib: KILLED ({reason})."))
            client.set_terminated(run.info.run_id, "KILLED")
            killed.append(run.info.run_id)
        except Exception as err:  # noqa: BLE001 - the server may be gone; the next start marks them instead
            logger.warning("could not mark run %s KILLED: %s", run.info.run_id[:8], str(err).splitlines()[0])
    return killed


def end_runs_on_signal(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> bool:
    """On each of ``signals``, end this process's running genlib runs as KILLED, then hand the signal to the
    handler that was there before (Prefect's marks its flow run; Python's raises KeyboardInterrupt).

    Call it from the main thread (signal handlers can only be set there); elsewhere it does nothing and
    returns False. Installing it twice is harmless.
    """
    try:
        for signum in signals:
            previous = signal.getsignal(signum)
            # Already ours, or ignored on purpose (a background job's SIGINT): the process will not end on
            # it, so its runs must not be marked KILLED either.
            if getattr(previous, "_genlib_ends_runs", False) or previous is signal.SIG_IGN:
                continue
            signal.signal(signum, _handler(signum, previous))
    except ValueError:  # not the main thread
        return False
    return True


def _handler(signum: int, previous: Any) -> Any:
    name = signal.Signals(signum).name

    def handle(sig: int, frame: Any) -> None:
        try:
            killed = kill_own_runs(f"the process received {name}")
            if killed:
                logger.warning("%s: marked %d run(s) KILLED", name, len(killed))
            _pop_active_runs(set(killed))
        except Exception as err:  # noqa: BLE001 - never stand between a signal and its default action
            logger.warning("%s: could not end the runs: %s", name, err)
        if callable(previous):
            previous(sig, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)

    handle._genlib_ends_runs = True  # type: ignore[attr-defined]
    return handle


def _pop_active_runs(killed: set[str]) -> None:
    """Take the killed runs off this thread's active-run stack, so that ``with mlflow.start_run()`` blocks
    unwinding on the exception that follows do not overwrite KILLED with FAILED."""
    import mlflow

    while (active := mlflow.active_run()) is not None and active.info.run_id in killed:
        mlflow.end_run("KILLED")
