"""The Prefect API a CLI command's flows talk to: Prefect's temporary server, started in the background."""

from __future__ import annotations

import os
import threading


def prefect_defaults() -> None:
    """Environment defaults for an in-process Prefect run, set before prefect reads its settings."""
    # A fresh ephemeral server migrates its database first; on a busy 2-core machine that exceeds the 20 s default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    # No telemetry calls from the temporary server (this machine may be offline).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


class PrefectServerStart(threading.Thread):
    """Starts Prefect's temporary server in the background; ``error`` holds what went wrong, if anything."""

    def __init__(self) -> None:
        super().__init__(name="prefect-server-start", daemon=True)
        self.error: BaseException | None = None

    def run(self) -> None:
        from prefect.server.api.server import SubprocessASGIServer

        try:
            SubprocessASGIServer().start()  # the instance the flows' client will find and reuse
        except BaseException as err:  # reported by the caller after join()
            self.error = err


def start_prefect_in_background() -> PrefectServerStart | None:
    """Start Prefect's temporary server while the caller imports and loads data; join before running flows.

    Only when no PREFECT_API_URL is configured (the flows would otherwise start it, serially, later).
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None
    starter = PrefectServerStart()
    starter.start()
    return starter
