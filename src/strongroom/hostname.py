"""This host's name, as points, locks, tombstones and key slots record it."""

from __future__ import annotations

import os


def host_name() -> str:
    """gethostname(2), which is uname's node name: read here without the ``socket`` module,
    which a backup's worker process would otherwise load for this alone."""
    return os.uname().nodename
