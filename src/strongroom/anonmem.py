"""Private anonymous memory maps: large buffers the kernel zero-fills page by page on first
touch, where ``bytearray(n)`` writes all ``n`` zeros at once.

A buffer that is only partly used therefore costs only the pages used: the NBD read-ahead's
buffers (``image/readahead.py``) are ``depth + workers`` windows of 4 MiB, which an
incremental backup of a few scattered MiB never fills; zeroing them up front took 0.05 s of
a live VM's incremental, whose CPU time is 0.3-0.4 s (docs/benchmarks.md, "Session 44").
Private, not shared: a shared anonymous map is backed by shmem and cannot grow with
``mmap.resize`` (``vault/indexrows.py`` grows its columns in place).
"""

from __future__ import annotations

import mmap

__all__ = ["anonymous_map"]


def anonymous_map(nbytes: int) -> mmap.mmap:
    """``nbytes`` of private anonymous memory, zeros until written."""
    return mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
