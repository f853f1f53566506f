"""Tracking and registry errors: user-facing (the CLI prints them as one line and exits 2)."""

from __future__ import annotations

from genlib.errors import GenlibError


class TrackingUnavailableError(GenlibError):
    """The MLflow tracking store cannot be reached or written."""


class RegistryError(GenlibError):
    """A registered model, version or alias that does not exist, or a registry operation refused."""


class GateFailedError(RegistryError):
    """A model version failed one of its metric gates; ``gate`` names the first that failed."""

    def __init__(self, message: str, gate: str = "") -> None:
        super().__init__(message)
        self.gate = gate
