"""Where genlib keeps what it can rebuild but should not rebuild every run (imports nothing heavy)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$GENLIB_CACHE_DIR`` or ``~/.cache/genlib``."""
    env = os.environ.get("GENLIB_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genlib"
