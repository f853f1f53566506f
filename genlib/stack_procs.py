"""Processes of the stack, by PID: start one in its own process group with a log, tell whether it still
runs (PID plus kernel start time, so a reused PID is not mistaken for it), stop its whole group, and
poll an HTTP health URL. Standard library only."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from genlib.errors import GenlibError
from genlib.ops.processes import pid_alive

def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat): tells a reused PID apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def alive(record: Mapping[str, Any]) -> bool:
    """True when the recorded process still runs (same PID and, on Linux, the same start time)."""
    pid = int(record["pid"])
    if not pid_alive(pid):
        return False
    started = start_time(pid)
    return record.get("start_time") is None or started is None or started == record["start_time"]


def spawn(name: str, argv: list[str], env: Mapping[str, str], folder: Path, cwd: Path) -> dict[str, Any]:
    """Start ``argv`` in its own process group, appending to ``<folder>/<name>.log``; the record keeps where
    in the log this process's lines begin (``log_offset``)."""
    log = folder / f"{name}.log"
    with open(log, "ab") as out:
        offset = out.tell()
        proc = subprocess.Popen(argv, env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return {"name": name, "pid": proc.pid, "start_time": start_time(proc.pid), "log": str(log), "log_offset": offset,
            "argv": argv}


# What Prefect (``| ERROR   |``, ``| CRITICAL |``), uvicorn (``ERROR:``), gunicorn (``[ERROR]``) and Python
# (``Traceback``) write when something failed.
_ERROR_LINE = re.compile(r"\|\s*(ERROR|CRITICAL)\s*\||^(ERROR|CRITICAL):|\[(ERROR|CRITICAL)\]|^Traceback \(most recent")


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


def stop(record: Mapping[str, Any], timeout: float = 20.0) -> bool:
    """Stop a recorded process group: SIGTERM, then SIGKILL after ``timeout``. False if it was not running."""
    if not alive(record):
        return False
    pid = int(record["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(record):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when this process is its parent
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # the group's stragglers (uvicorn workers, flow runs) too
    return True


def executable(name: str) -> str:
    return shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name) or name


def http_status(url: str, auth_string: str | None = None, timeout: float = 3.0) -> int:
    """HTTP status of GET ``url`` (0 when nothing answers)."""
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


def wait_until(what: str, check: Callable[[], bool], timeout: float, record: Mapping[str, Any]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not alive(record):
            raise GenlibError(f"{what} exited while starting; see {record['log']}")
        time.sleep(0.5)
    raise GenlibError(f"{what} did not answer within {timeout:.0f} s; see {record['log']}")


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
