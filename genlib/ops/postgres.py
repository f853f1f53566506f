"""A PostgreSQL cluster on this machine, for servers that many writers share (Debian's ``postgresql`` package).

The stack (``genlib stack up --prefect-db postgresql``) keeps the Prefect server's database in one here: on
SQLite, Prefect 3.8.8's worker heartbeats fail with "database is locked" whenever another write lands between
their read and their write (a deferred transaction cannot wait for the lock), and each failure is an error
line in the server's log. ``bench/load.py`` uses a throw-away cluster for its PostgreSQL rounds.

The cluster listens on 127.0.0.1 only, with trust authentication for the role ``genlib`` (no password:
nothing but this machine's users can reach it). ``initdb`` refuses to run as root, so as root the cluster
belongs to the ``postgres`` user and its programs run through ``setpriv``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from genlib.errors import ConfigError

ROLE = "genlib"


def bindir() -> Path | None:
    """The folder of PostgreSQL's server programs (``initdb``, ``postgres``, ``pg_isready``), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # Debian links only some programs into /usr/local/bin
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parent.parent.name)
    return versions[-1].parent if versions else None


def require_bindir() -> Path:
    found = bindir()
    if found is None:
        raise ConfigError("PostgreSQL is not installed here (Debian: apt-get install postgresql); "
                          "or leave the Prefect database on SQLite (--prefect-db sqlite)")
    return found


def _as_owner() -> list[str]:
    # setpriv execs the program itself (runuser stays its parent and, stopped, kills it two seconds later):
    # the stack's record is then PostgreSQL's own process, which shuts down cleanly on SIGTERM.
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] if os.geteuid() == 0 else []


def ensure_cluster(folder: Path) -> Path:
    """The cluster's data folder ``<folder>/data``, created with ``initdb`` the first time."""
    data = folder / "data"
    if (data / "PG_VERSION").is_file():
        return data
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0 and subprocess.run([*_as_owner(), "test", "-x", str(folder.parent)]).returncode != 0:
        raise ConfigError(f"the postgres user cannot reach {folder.parent} (a folder above it is private to "
                          f"root); keep the stack's state elsewhere (GENLIB_STACK_DIR)")
    data.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        for path in (folder, data):
            shutil.chown(path, "postgres")
    done = subprocess.run([*_as_owner(), str(require_bindir() / "initdb"), "-D", str(data), "-U", ROLE,
                           "--auth=trust", "--encoding=UTF8"], capture_output=True, text=True)
    if done.returncode != 0:
        raise ConfigError(f"initdb {data} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return data


def server_argv(folder: Path, port: int) -> list[str]:
    """The command that runs the cluster in ``folder`` on 127.0.0.1:``port`` (in the foreground)."""
    return [*_as_owner(), str(require_bindir() / "postgres"), "-D", str(folder / "data"), "-p", str(port),
            "-k", str(folder), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]


def ready(port: int) -> bool:
    return subprocess.run([str(require_bindir() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-U", ROLE,
                           "-d", "postgres"],
                          capture_output=True).returncode == 0


def ensure_database(port: int, name: str) -> None:
    """Create database ``name`` (owned by ``genlib``) unless it exists."""
    psql = [str(require_bindir() / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", ROLE, "-d", "postgres",
            "-tAc"]
    exists = subprocess.run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"], capture_output=True,
                            text=True)
    if exists.returncode == 0 and exists.stdout.strip() == "1":
        return
    made = subprocess.run([*psql, f'CREATE DATABASE "{name}" OWNER {ROLE}'], capture_output=True, text=True)
    if made.returncode != 0:
        raise ConfigError(f"could not create database {name}: {made.stderr.strip().splitlines()[-1:]}")


def url(port: int, database: str, driver: str = "asyncpg") -> str:
    """SQLAlchemy URL of ``database`` (``asyncpg`` for Prefect, ``psycopg2`` for MLflow)."""
    return f"postgresql+{driver}://{ROLE}@127.0.0.1:{port}/{database}"
