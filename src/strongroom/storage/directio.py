"""Writing large objects past the page cache (``O_DIRECT``).

A backup writes far more than it will read back soon: copying every pack into the page cache
costs about as much CPU as compressing it (measured: 0.75 s vs 0.08 s for 680 MiB of 16 MiB
files with fsync, buffered vs direct) and evicts the host's working set.  Direct I/O needs the
buffer, the file offset and the length aligned to the device's logical block size, so only the
aligned body of a page-aligned, writable buffer goes direct; the tail, small objects and
file systems without ``O_DIRECT`` (tmpfs) take the ordinary path.  Durability is unchanged:
the caller still fsyncs the file and its folder.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from typing import Final

__all__ = ["ALIGN", "write_all"]

# a multiple of every logical block size in use (512 and 4096)
ALIGN: Final = 4096
_MIN_DIRECT: Final = 1 << 20
_O_DIRECT: Final = getattr(os, "O_DIRECT", 0)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data`` at ``fd``'s offset (which must be 0 or aligned for the direct part)."""
    view = memoryview(data).cast("B")
    body = len(view) // ALIGN * ALIGN
    if body >= _MIN_DIRECT and _aligned(view) and _set_direct(fd, True):
        try:
            done = _write_direct(fd, view[:body])
        finally:
            _set_direct(fd, False)
        view = view[done:]
    _write_buffered(fd, view)


def _aligned(view: memoryview) -> bool:
    if view.readonly or not view.c_contiguous or _O_DIRECT == 0:
        return False
    try:
        probe = ctypes.c_char.from_buffer(view)
    except (TypeError, ValueError):
        return False
    address = ctypes.addressof(probe)
    del probe  # releases the buffer export at once
    return address % ALIGN == 0


def _set_direct(fd: int, on: bool) -> bool:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    wanted = flags | _O_DIRECT if on else flags & ~_O_DIRECT
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, wanted)
    except OSError as e:
        if e.errno == errno.EINVAL:
            return False  # the file system has no direct I/O: write through the cache
        raise
    return True


def _write_direct(fd: int, view: memoryview) -> int:
    """Write aligned blocks; returns how many bytes went (less only on a refused write)."""
    done = 0
    while done < len(view):
        try:
            written = os.write(fd, view[done:])
        except OSError as e:
            if e.errno == errno.EINVAL:
                return done  # refused after all (e.g. a stricter alignment): buffered rest
            raise
        done += written
        if written % ALIGN:
            return done  # a short, unaligned write: the offset is no longer aligned
    return done


def _write_buffered(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]
