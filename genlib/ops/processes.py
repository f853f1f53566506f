"""Server processes on loopback: free ports, waiting for a health URL, and stopping a whole process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request

from genlib.errors import ConfigError


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
