"""Where strongroom keeps its local caches: apart from ``url.py``, whose backends a files
worker process never needs (``tests/files/test_worker_imports.py``), though every walk keeps
out of this folder (``files/selection.py``)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/strongroom``, or ``~/.cache/strongroom``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "strongroom"
