"""Server processes on this machine: start one in its own process group with a log, tell whether it still
runs, stop its whole group, find a free port, ask an HTTP health URL and wait for it. Standard library only.

A process is known either as the ``subprocess.Popen`` of the process that started it (``genlib ui``, a
temporary Prefect server) or as the record :func:`spawn` returns (``genlib stack``: written to a file, read
back by a later command); :func:`stop_group` takes either.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from genlib.errors import ConfigError

# --- starting -----------------------------------------------------------------------------------------


def executable(name: str) -> str:
    """``name`` from this interpreter's environment (the venv), else from PATH."""
    return shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name) or name


def die_with_parent() -> None:
    """``preexec_fn`` for a server: SIGTERM it when the process that started it dies, however that dies
    (Linux's parent-death signal; elsewhere a no-op)."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def launch(argv: list[str], env: Mapping[str, str], log: Path, cwd: Path | None = None, *,
           tied: bool = False) -> subprocess.Popen:
    """Start ``argv`` leading its own process group (so its workers stop with it), appending its output to
    ``log``; ``tied``: it also dies with this process (:func:`die_with_parent`)."""
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=die_with_parent if tied else None)


def spawn(name: str, argv: list[str], env: Mapping[str, str], folder: Path, cwd: Path) -> dict[str, Any]:
    """Start ``argv`` (outliving this process) with its log ``<folder>/<name>.log``; returns its record: PID,
    kernel start time, the log and where in the log this process's lines begin (``log_offset``)."""
    log = folder / f"{name}.log"
    offset = log.stat().st_size if log.exists() else 0
    proc = launch(argv, env, log, cwd)
    return {"name": name, "pid": proc.pid, "start_time": start_time(proc.pid), "log": str(log), "log_offset": offset,
            "argv": argv}


# --- running or not -----------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` runs on this machine (as any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat): tells a reused PID apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def alive(record: Mapping[str, Any]) -> bool:
    """True when the recorded process still runs (same PID and, on Linux, the same start time); an exited
    child of this process is reaped first, so that it does not count as running."""
    pid = int(record["pid"])
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    if not pid_alive(pid):
        return False
    started = start_time(pid)
    return record.get("start_time") is None or started is None or started == record["start_time"]


# What Prefect (``| ERROR   |``, ``| CRITICAL |``), uvicorn (``ERROR:``), gunicorn (``[ERROR]``), PostgreSQL
# (``[pid] FATAL:``, ``PANIC:``) and Python (``Traceback``) write when something failed. PostgreSQL's ``ERROR``
# lines are left out: each is a statement refused and returned to its client (a unique-key conflict that
# Prefect's server expects and handles, say), and a client that could not handle one logs it itself.
_ERROR_LINE = re.compile(r"\|\s*(ERROR|CRITICAL)\s*\||^(ERROR|CRITICAL):|\[(ERROR|CRITICAL)\]|^Traceback \(most recent"
                         r"|\] (FATAL|PANIC):  ")


def error_lines(record: Mapping[str, Any], limit: int = 200) -> list[str]:
    """The error lines of ``record``'s log written since it was started (at most the last ``limit``)."""
    try:
        with open(record["log"], "rb") as log:
            log.seek(int(record.get("log_offset", 0)))
            text = log.read().decode(errors="replace")
    except OSError:
        return []
    found = [line.rstrip() for line in text.splitlines() if _ERROR_LINE.search(line)]
    return found[-limit:]


# --- stopping -----------------------------------------------------------------------------------------


def stop_group(target: subprocess.Popen | Mapping[str, Any], timeout: float = 20.0) -> bool:
    """Stop a process and every process of the group it leads: SIGTERM, then SIGKILL after ``timeout``.

    ``target`` is the Popen of a process this one started, or a :func:`spawn` record (which may belong to
    another command's child). Returns False when it was no longer running; a record's group is then left
    alone, since its PID may since have been given to another process.
    """
    owned = isinstance(target, subprocess.Popen)
    pid = target.pid if owned else int(target["pid"])  # type: ignore[union-attr,index]

    def running() -> bool:
        return target.poll() is None if owned else alive(target)  # type: ignore[union-attr,arg-type]

    was_running = running()
    if not was_running and not owned:
        return False
    if was_running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while running() and time.monotonic() < deadline:
            time.sleep(0.1)
    # The group's stragglers (uvicorn workers, flow runs) may outlive its leader; take them down with it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if owned:
        target.wait()  # type: ignore[union-attr]
    else:  # gone (and reaped, when it is this process's child) before this returns
        wait_until(lambda: not alive(target), 5.0, interval=0.05)  # type: ignore[arg-type]
    return was_running


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` (and Prefect's crash handling) runs."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread instead of killing at once."""
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- ports and HTTP -----------------------------------------------------------------------------------


def port_free(host: str, port: int) -> bool:
    """True when ``port`` can be bound on ``host`` the way the servers bind it (SO_REUSEADDR, so the
    TIME_WAIT sockets a stopped server leaves behind do not count as in use)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` if it is free on ``host`` (0 means any), else a free port the system picks."""
    if preferred and port_free(host, preferred):
        return preferred
    with socket.socket() as s:
        try:
            s.bind((host, 0))
        except OSError:
            raise ConfigError(f"no free port on {host}") from None
        return s.getsockname()[1]


def http_status(url: str, auth_string: str | None = None, timeout: float = 3.0) -> int:
    """HTTP status of GET ``url``, with basic auth ``user:password`` when given (0 when nothing answers)."""
    request = urllib.request.Request(url)
    if auth_string:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth_string.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:  # noqa: S310 - URLs we built
            return r.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def answers(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers now with success (a health URL: 2xx, redirects followed)."""
    return 200 <= http_status(url, timeout=timeout) < 300


def wait_until(check: Callable[[], bool], timeout: float, running: Callable[[], bool] | None = None,
               interval: float = 0.3) -> bool:
    """Poll ``check`` until it returns True (True); False once ``timeout`` seconds pass or ``running``
    (the process that should answer) returns False."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running is not None and not running():
            return False
        if check():
            return True
        time.sleep(interval)
    return False


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """True once ``url`` answers (:func:`answers`) within ``timeout`` seconds; False if ``proc`` exits first."""
    return wait_until(lambda: answers(url), timeout, None if proc is None else (lambda: proc.poll() is None))
