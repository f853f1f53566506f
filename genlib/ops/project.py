"""Where a checkout keeps its local services' state, and the Prefect pull step that enters a checkout.

``<project>/.genlib/`` (git-ignored; ``$GENLIB_STACK_DIR`` instead when set) holds the stack's PIDs and logs
(``stack/``) and the project-local Prefect home (``prefect/``) every server genlib starts uses.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from genlib.errors import ConfigError


def project_dir() -> Path:
    """``$GENLIB_PROJECT_DIR``, else the checkout whose ``mlflow/`` holds the embedded store."""
    env = os.environ.get("GENLIB_PROJECT_DIR")
    if env:
        return Path(env).expanduser().resolve()
    from genlib.tracking.store import project_mlflow_dir  # no mlflow import: a path lookup

    return project_mlflow_dir().parent


def _genlib_dir(project: Path) -> Path:
    env = os.environ.get("GENLIB_STACK_DIR")  # tests and second stacks: state apart from the checkout's
    return Path(env).expanduser().resolve() if env else project / ".genlib"


def state_dir(project: Path) -> Path:
    """PIDs (``stack.json``) and logs of the stack: ``<project>/.genlib/stack`` (git-ignored)."""
    return _genlib_dir(project) / "stack"


def prefect_home(project: Path) -> Path:
    """The project-local Prefect home: the stack's server keeps its database (run history) here."""
    return _genlib_dir(project) / "prefect"


def set_project_directory(variable: str = "GENLIB_PROJECT_DIR") -> dict[str, str]:
    """Prefect pull step (``prefect.yaml``): change into the checkout named by ``$variable`` of the process
    running the flow, read when the run starts, so one deployment runs from each worker's own checkout."""
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(f"{variable} is not set on this worker: export it as the genlib checkout to run flows from")
    path = Path(value).expanduser().resolve()
    if not (path / "flows").is_dir():
        raise ConfigError(f"{variable}={value}: no flows/ folder there; it must be a genlib checkout")
    os.chdir(path)
    if str(path) not in sys.path:  # the entrypoint imports flows.* from the checkout
        sys.path.insert(0, str(path))
    return {"directory": str(path)}
