"""Server processes on loopback: free ports, waiting for a health URL, and stopping a whole process group."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

from genlib.errors import ConfigError


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` runs on this machine (as any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """True once ``url`` answers with a status below 500 within ``timeout`` seconds (False if ``proc`` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if answers(url):
            return True
        time.sleep(0.3)
    return False


def answers(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers now with a status below 500."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback URLs we built
            return r.status < 500
    except OSError:
        return False


def free_port(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` if it is free on ``host`` (0 means any), else a free port the system picks."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise ConfigError(f"no free port on {host}")


def stop_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop ``proc`` and every process of its group (servers lead their own group): SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Workers the leader forked may outlive it for a moment; take the group down with it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


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
