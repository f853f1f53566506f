"""A lock per registered model, held in the MLflow store itself, so alias moves are compare-and-set.

The lock is a registered model named ``genlib.lock.<model name>``: creating a registered model is
atomic in every MLflow backend (the name is the primary key of the ``registered_models`` table, in
sqlite and PostgreSQL alike, and a tracking server passes the uniqueness error through as
``RESOURCE_ALREADY_EXISTS``). So whoever creates it holds the lock, across processes and machines,
with nothing but the tracking store shared; deleting it releases the lock. The holder is recorded
in a tag (``host:pid:nonce``), which lets a waiter break a lock whose holder died: at once when the
holder ran on this host and its process is gone, otherwise after the same holder has been seen for
``stale_after`` seconds of the waiter's own clock (no clock comparison across machines).

Why not a Prefect global concurrency limit: genlib's library does not import prefect, and the
registry is also used outside flows (``genlib promote``); the MLflow store is the one thing every
registering process already shares.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

from genlib.ops.processes import pid_alive
from genlib.tracking.errors import RegistryError

logger = logging.getLogger(__name__)

LOCK_PREFIX = "genlib.lock."  # not "genlib-": listings of genlib-* models never show a held lock
HOLDER_TAG = "genlib.lock_holder"
# A promotion holds the lock for a handful of requests; a holder seen this long has died or hung.
STALE_AFTER_SECONDS = 60.0
TIMEOUT_SECONDS = 180.0
_TRANSIENT = ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED")


def lock_name(name: str) -> str:
    return f"{LOCK_PREFIX}{name}"


def holder_token() -> str:
    """``host:pid:nonce`` of this process (the nonce tells two acquisitions by one process apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _error_code(err: Exception) -> str:
    return str(getattr(err, "error_code", ""))


def _holder(client: Any, name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return (client.get_registered_model(name).tags or {}).get(HOLDER_TAG, "")
    except MlflowException as err:
        if _error_code(err) in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return None
        raise


def _holder_is_dead_here(holder: str) -> bool:
    """True when ``holder`` ran on this host under a PID that no longer exists."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return not pid_alive(int(pid_text))


def _delete_if_held_by(client: Any, name: str, holder: str) -> None:
    from mlflow.exceptions import MlflowException

    # Re-read just before deleting: never delete a lock someone else has taken since.
    if _holder(client, name) != holder:
        return
    with contextlib.suppress(MlflowException):  # already gone
        client.delete_registered_model(name)


def acquire(client: Any, name: str, *, timeout: float = TIMEOUT_SECONDS,
            stale_after: float = STALE_AFTER_SECONDS) -> str:
    """Take the lock of registered model ``name``; returns the holder token to release it with.

    Raises RegistryError naming the holder when the lock is not free within ``timeout`` seconds.
    """
    from mlflow.exceptions import MlflowException

    lock, token = lock_name(name), holder_token()
    deadline = time.monotonic() + timeout
    seen: tuple[str, float] | None = None  # (holder, when first seen) for staleness on our own clock
    while True:
        try:
            client.create_registered_model(lock, tags={HOLDER_TAG: token},
                                           description=f"genlib: lock for moving aliases of {name}")
            return token
        except MlflowException as err:
            code = _error_code(err)
            if code in _TRANSIENT and time.monotonic() < deadline:  # e.g. a busy sqlite store behind the server
                logger.info("registry lock of %s: %s, retrying", name, code)
                time.sleep(random.uniform(0.2, 1.0))
                continue
            if code == "RESOURCE_DOES_NOT_EXIST" and time.monotonic() < deadline:
                # MLflow's store answers a duplicate name by reading the existing model back; when
                # its holder released it in between, that read fails: the lock was taken, now free.
                continue
            if code != "RESOURCE_ALREADY_EXISTS":
                raise
        holder = _holder(client, lock)
        if holder == token:  # our create succeeded but its reply was lost and retried
            return token
        now = time.monotonic()
        if holder is None:  # released between our create and our read
            continue
        if seen is None or seen[0] != holder:
            seen = (holder, now)
        if _holder_is_dead_here(holder) or now - seen[1] > stale_after:
            logger.warning("breaking the registry lock of %s: holder %s %s", name, holder,
                           "is gone" if _holder_is_dead_here(holder) else f"held it over {stale_after:.0f} s")
            _delete_if_held_by(client, lock, holder)
            seen = None
            continue
        if now > deadline:
            raise RegistryError(f"could not take the registry lock of {name} within {timeout:.0f} s "
                                f"(held by {holder}); if that process is gone, delete registered model {lock}")
        time.sleep(random.uniform(0.05, 0.3))  # jitter: waiters do not retry in lock-step


def release(client: Any, name: str, token: str) -> None:
    """Release the lock of ``name`` if ``token`` still holds it."""
    _delete_if_held_by(client, lock_name(name), token)


@contextlib.contextmanager
def registry_lock(client: Any, name: str, *, timeout: float = TIMEOUT_SECONDS) -> Iterator[str]:
    """Hold the lock of registered model ``name`` for the ``with`` block (released on every exit path)."""
    token = acquire(client, name, timeout=timeout)
    try:
        yield token
    finally:
        release(client, name, token)
