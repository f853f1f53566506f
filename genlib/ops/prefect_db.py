"""An empty, migrated Prefect database kept in genlib's user cache and copied into each new Prefect home.

A Prefect server on a new home creates its sqlite database with Prefect's Alembic migrations, which takes
several times as long to answer as a server on a home that already has its database (docs/benchmarks.md,
History: "Pipeline overhead"). A clone's first pipeline paid that inside its
CPU-bound start-up. So the first server genlib starts on a new home snapshots the database as soon as the
server answers (no run is in it yet: what a restarted home holds), and every later new home starts from a
copy of it. The copy is keyed by Prefect's version; the server still runs its migrations on it (none are
left to apply), so a template from another version is never used, and a wrong one costs only the time.

Only the default sqlite database at ``<home>/prefect.db`` is seeded: a home whose server is configured with
another database (``PREFECT_API_DATABASE_CONNECTION_URL``, e.g. the stack's PostgreSQL) is left alone.
Nothing here imports prefect.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from genlib.user_cache import cache_root

logger = logging.getLogger(__name__)

DB_NAME = "prefect.db"


def template_path() -> Path | None:
    """The cached empty database for the installed Prefect, or None when Prefect's version is unknown."""
    try:
        version = metadata.version("prefect")
    except metadata.PackageNotFoundError:
        return None
    return cache_root() / "prefect" / f"empty-{version}.db"


def _default_sqlite(env: Mapping[str, str]) -> bool:
    return not env.get("PREFECT_API_DATABASE_CONNECTION_URL")


def seed_home(home: Path, env: Mapping[str, str] | None = None) -> bool | None:
    """Copy the template into ``home`` when it has no database yet.

    Returns True when it was seeded, False when the home's database is new and should be snapshotted once
    its server answers (no template yet), None when there is nothing to do (a database exists, or another
    database is configured).
    """
    env = os.environ if env is None else env
    target = Path(home) / DB_NAME
    if not _default_sqlite(env) or target.exists():
        return None
    template = template_path()
    if template is None or not template.is_file():
        return False
    try:
        tmp = target.with_name(f".{DB_NAME}.seed")
        shutil.copyfile(template, tmp)
        tmp.replace(target)
    except OSError as err:  # a read-only cache or a full disk: the server creates the database itself
        logger.warning("could not copy the Prefect database template %s: %s", template, err)
        return False
    logger.info("seeded the new Prefect home %s from %s", home, template)
    return True


def save_template(home: Path) -> Path | None:
    """Snapshot ``home``'s database (its server running, no runs recorded yet) as the template.

    Uses sqlite's online backup, which copies a consistent state while the server writes (WAL mode);
    written to a temporary file and renamed, so a half-written template is never read. Returns the path.
    """
    template = template_path()
    source = Path(home) / DB_NAME
    if template is None or not source.is_file():
        return None
    tmp = template.with_name(f".{template.name}.{os.getpid()}.tmp")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=5)) as src, \
                contextlib.closing(sqlite3.connect(tmp)) as dst:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        tmp.replace(template)
    except (OSError, sqlite3.Error) as err:
        logger.warning("could not save the Prefect database template %s: %s", template, err)
        with contextlib.suppress(OSError):
            tmp.unlink()
        return None
    logger.info("saved the empty Prefect database of %s as %s", home, template)
    return template
