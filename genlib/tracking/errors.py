"""Tracking and registry errors: user-facing (the CLI prints them as one line and exits 2)."""

from __future__ import annotations

from genlib.errors import GenlibError


class TrackingUnavailableError(GenlibError):
    """The MLflow tracking store cannot be reached or written."""


class RegistryError(GenlibError):
    """A registered model, version or alias that does not exist, or a registry operation refused."""


class GateFailedError(RegistryError):
    """A model version failed one of its metric gates; ``gate`` names the first that failed.

    ``refusal`` says what was refused and why; the message adds how to override it, the command line's
    ``--force`` by default. Callers with another override (a deployment's ``force`` parameter) use
    :meth:`with_override`.
    """

    CLI_OVERRIDE = "use --force to override"

    def __init__(self, refusal: str, gate: str = "") -> None:
        super().__init__(self._join(refusal, self.CLI_OVERRIDE))
        self.refusal = refusal
        self.gate = gate

    def with_override(self, how: str) -> str:
        """The one-line message naming ``how`` to override instead of ``--force``."""
        return self._join(self.refusal, how)

    @staticmethod
    def _join(refusal: str, how: str) -> str:
        return f"{refusal}; {how}"
