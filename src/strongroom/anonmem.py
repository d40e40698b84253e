"""Private anonymous memory maps: large buffers the kernel zero-fills page by page on first
touch, where ``bytearray(n)`` writes all ``n`` zeros at once.

A buffer that is only partly used therefore costs only the pages used: the NBD read-ahead's
buffers (``image/readahead.py``) are ``depth + workers`` windows of 4 MiB, which an
incremental backup of a few scattered MiB never fills; zeroing them up front took 0.05 s of
a live VM's incremental, whose CPU time is 0.3-0.4 s (docs/benchmarks.md, "Session 44").
They also start on a page boundary, which a buffer the kernel reads into should: on the
AMD EPYC machines this project measures on, the kernel's copy to or from user memory (``rep
movsb``) ran 5 times slower whenever the destination sat 1 to 31 bytes past the source
modulo 4 KiB (0.34 s against 0.064 s for 512 MiB read from the page cache; 32 bytes or more
past it, or before it, full speed).  A file or disk read from a page-aligned offset into a
``bytearray`` of 128 KiB or more, which glibc maps for it and starts 16 bytes into a page,
is such a read: a raw image's first backup read its 2 GiB that way for 1 CPU s more
(docs/benchmarks.md, "Session 48").

Private, not shared: a shared anonymous map is backed by shmem and cannot grow with
``mmap.resize`` (``vault/indexrows.py`` grows its columns in place).
"""

from __future__ import annotations

import mmap

__all__ = ["anonymous_map"]


def anonymous_map(nbytes: int) -> mmap.mmap:
    """``nbytes`` of private anonymous memory, zeros until written."""
    return mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
