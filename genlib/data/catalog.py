"""The named data sets and whether each can be loaded here, listed without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from genlib.data import named as _named  # noqa: F401 - registers the named data sets (torch-free at import)
from genlib.data.registry import default_data_root, registered


@dataclass(frozen=True)
class DatasetInfo:
    """A named data set, whether it can be loaded without network here, and where it was found or looked for."""

    name: str
    description: str
    available_offline: bool
    location: str


def list_datasets(root: str | Path | None = None) -> list[DatasetInfo]:
    """Every registered data set with its offline availability under ``root`` (default data root)."""
    root_path = Path(root).expanduser() if root is not None else default_data_root()
    infos = []
    for entry in registered():
        available, location = entry.probe(root_path)
        infos.append(DatasetInfo(entry.name, entry.description, available, location))
    return infos
