"""glibc malloc's thresholds for a files backup: its CLI process (``cli/files.py``) and its
workers (:mod:`strongroom.files.procwork`).

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

Restores are left with glibc's defaults: there every chunk's plaintext and decompressed copy
is a fresh block of up to 4 MiB, and with the thresholds fixed a restore of two 512 MiB
files took 1.6 CPU seconds instead of 1.0-1.2 for no memory saved (their peak was 52 MiB
either way, the key derivation's).  The same holds for a files restore's workers
(restorework), which do not apply it either.
"""

from __future__ import annotations

import ctypes

THRESHOLD = 1 << 20

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3


def apply() -> bool:
    """Fix glibc's thresholds for this process; False where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to tune
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, THRESHOLD))
