"""Reading a disk chunk by chunk in parallel: the engine of backup, compare and verify.

``scan`` runs a few worker threads; each owns one reused buffer, takes the next chunk index,
reads the chunk (a pread for raw images) and hands it to ``handle`` in the same thread.
Hashing, compression and encryption release the GIL, so two cores stay busy while other
workers wait for their reads.  Chunks outside the disk's data extents are never read.

An NBD disk is read ahead instead (``readahead.py``): the calling thread keeps up to
``depth`` READs of up to ``span`` bytes (runs of adjacent chunks) in flight while the workers
handle what has arrived, so the server always has work queued and sees fewer, larger
requests (issue 19: QEMU spent twice virtnbdbackup's CPU serving one-chunk reads, four at a
time).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Final, Generic, TypeVar

from strongroom.anonmem import anonymous_map
from strongroom.image.disks import Disk
from strongroom.image.readahead import AsyncReads, read_ahead

__all__ = [
    "DEFAULT_DEPTH",
    "DEFAULT_SPAN",
    "DEFAULT_WORKERS",
    "chunk_indexes",
    "run_parallel",
    "scan",
]

T = TypeVar("T")

DEFAULT_WORKERS: Final = 4
DEFAULT_SPAN: Final = 4 << 20
"""Largest NBD READ a scan sends (adjacent chunks are read together up to this)."""
DEFAULT_DEPTH: Final = 6
"""NBD READs a scan keeps in flight."""

Handler = Callable[[int, memoryview], None]
Progress = Callable[[int], None]


def chunk_indexes(extents: Iterable[tuple[int, int]], chunk_size: int) -> Iterator[int]:
    """Indexes of the chunks overlapping any extent, ascending, each once."""
    last = -1
    for offset, length in extents:
        if length <= 0:
            continue
        first = max(offset // chunk_size, last + 1)
        end = -(-(offset + length) // chunk_size)
        yield from range(first, end)
        last = max(last, end - 1)


def read_bytes(extents: Iterable[tuple[int, int]], chunk_size: int, size: int) -> int:
    """How many bytes a scan of these extents reads (whole chunks)."""
    total = 0
    for index in chunk_indexes(extents, chunk_size):
        total += min(chunk_size, size - index * chunk_size)
    return total


class _Shared(Generic[T]):
    """A work list several threads draw from; the first error stops them all."""

    def __init__(self, items: Iterable[T]) -> None:
        self.items = iter(items)
        self.lock = threading.Lock()
        self.error: BaseException | None = None

    def take(self) -> tuple[bool, T | None]:
        with self.lock:
            if self.error is not None:
                return False, None
            for item in self.items:
                return True, item
            return False, None

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = exc


def run_parallel(
    items: Iterable[T], work: Callable[[T, memoryview | None], None], workers: int, buf: int = 0
) -> None:
    """Call ``work(item, buffer)`` for every item from ``workers`` threads.

    Each thread owns one reused ``buf``-byte buffer (None when ``buf`` is 0).  The first
    error stops every worker and is raised here.
    """
    shared: _Shared[T] = _Shared(items)

    def loop() -> None:
        # page-aligned, as every chunk's offset in the disk is: a bytearray of this size
        # starts 16 bytes into a page, and the kernel copied each read 5 times slower
        # (anonmem.py says why; a raw image's first backup took 1 CPU s more)
        view = memoryview(anonymous_map(buf)) if buf else None
        try:
            while True:
                ok, item = shared.take()
                if not ok:
                    return
                work(item, view)  # type: ignore[arg-type]
        except BaseException as exc:
            shared.fail(exc)

    threads = [
        threading.Thread(target=loop, name=f"disk-io-{n}", daemon=True) for n in range(workers)
    ]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException as exc:  # Ctrl-C: stop the workers before leaving
        shared.fail(exc)
        for t in threads:
            t.join()
        raise
    if shared.error is not None:
        raise shared.error


def scan(
    disk: Disk,
    chunk_size: int,
    indexes: Iterable[int],
    handle: Handler,
    *,
    workers: int = DEFAULT_WORKERS,
    progress: Progress | None = None,
    size: int | None = None,
    span: int = DEFAULT_SPAN,
    depth: int = DEFAULT_DEPTH,
) -> None:
    """Read each chunk of ``indexes`` and call ``handle(index, data)`` (from worker threads).

    ``data`` is only valid during the call.  ``size`` (default: the disk's) clips the last
    chunk.  The first error stops every worker and is raised here.  An NBD disk is read
    with up to ``depth`` requests of up to ``span`` bytes in flight (``depth`` 0: one
    chunk per worker, as a raw disk is read; so is a disk whose server takes no whole
    chunk in one request).
    """
    end = disk.size if size is None else size
    if isinstance(disk, AsyncReads) and depth > 0 and chunk_size <= disk.max_request:
        read_ahead(disk, chunk_size, indexes, handle, end, workers, span, depth, progress)
        return

    def work(index: int, buf: memoryview | None) -> None:
        assert buf is not None
        offset = index * chunk_size
        view = buf[: min(chunk_size, end - offset)]
        disk.read_into(offset, view)
        handle(index, view)
        if progress is not None:
            progress(len(view))

    run_parallel(indexes, work, workers, chunk_size)
