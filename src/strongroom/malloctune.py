"""glibc malloc's thresholds for a files backup, its CLI process (``cli/files.py``) and its
workers (:mod:`strongroom.files.procwork`); its arenas for a files restore.

glibc serves an allocation of at least ``M_MMAP_THRESHOLD`` bytes (128 KiB to start with) by
``mmap`` and gives it back on ``free``; but each time such a block is freed the threshold
rises to its size (up to 32 MiB), and the trim threshold to twice that.  A backup allocates
and frees blocks of a chunk's size (up to 4 MiB: reads, compressed copies, tree blobs, the
worker's messages) in three or four threads, each thread with its own arena, so after the
first few every arena kept several MiB of freed blocks it never returned.  Fixing both
thresholds at 1 MiB stops that: a first backup of /usr's 1 GiB peaked at 114-118 MiB
summed over its two processes instead of 126-134, 50,000 small files at 94-96 instead of
101, with the same CPU time (docs/benchmarks.md, "Session 17").  Lower thresholds saved a
little more and cost CPU: 256 KiB, 0.1-0.4 s more for /usr (an mmap, a munmap and a page
fault per 4 KiB for every chunk-sized block).

Restores keep glibc's thresholds: there every chunk's plaintext and decompressed copy
is a fresh block of up to 4 MiB, and with the thresholds fixed a restore of two 512 MiB
files took 1.6 CPU seconds instead of 1.0-1.2 for no memory saved (their peak was 52 MiB
either way, the key derivation's).  What a restore of many small files fixes instead, in
its parent (``files/restorestart.py``, as it starts its workers) and its workers (restorework),
is the number of arenas (:func:`one_arena`): each thread that reads and writes files
otherwise gets an arena of its own, and every arena keeps the chunk-sized blocks freed in
it.  A restore of /usr's 1 GiB kept 6-7 MiB in each of two thread arenas per process and
peaked at 94-122 MiB summed over its two processes; in one arena 80-92, with the same CPU
time (50,000 small files: 70-72 MiB against 64-66; docs/benchmarks.md, "Session 38").
The threads allocate mostly under Python's GIL, so they hardly contend for the arena's
lock.  A restore of big files (no worker processes) keeps its arenas: in one, two 512 MiB
files took 5 % more CPU time.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

THRESHOLD = 1 << 20

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def apply() -> bool:
    """Fix glibc's thresholds for this process; False where the C library is not glibc."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, THRESHOLD))


def one_arena() -> bool:
    """Have the threads of this process allocate from glibc's main arena (a restore of many
    small files; the module says why): no arena is made from now on, and a thread without
    one shares those there are.  False where the C library is not glibc."""
    mallopt = _mallopt()
    return mallopt is not None and bool(mallopt(_M_ARENA_MAX, 1))


def _mallopt() -> Callable[[int, int], int] | None:
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to tune
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt
