"""Errors that mean "the user asked for something wrong": the CLI prints them as one line."""


class GenlibError(Exception):
    """Base class for user-facing errors (bad name, bad file, bad value)."""


class UnknownNameError(GenlibError, KeyError):
    """A model or data set name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(GenlibError):
    """A data file that is missing, corrupt or not in the expected format."""


class ConfigError(GenlibError, ValueError):
    """A hyper-parameter out of range or inconsistent with the data."""


class TrainingDivergedError(GenlibError):
    """The loss became NaN or infinite during training."""
