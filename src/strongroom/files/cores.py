"""How many helper processes a files backup or restore starts (kept apart from
``workerproc.py`` so a run that starts none does not load the process machinery)."""

from __future__ import annotations

import os


def process_count(requested: int | None, most: int = 8, spare: int = 0) -> int:
    """How many helper processes: ``requested``, or one per core this process may run on
    less ``spare`` (the cores left to the command's own process when it works too), at least
    one; none on one core, where they would only add their start-up."""
    if requested is not None:
        return max(0, min(requested, most))
    cores = len(os.sched_getaffinity(0))
    return 0 if cores < 2 else max(1, min(cores - spare, most))


def chunk_threads(most: int = 4) -> int:
    """Threads that put a big file's chunks (``content.ContentReader``): one per core this
    process may run on, none on one core."""
    return process_count(None, most)  # the same count: one per core, none on one
