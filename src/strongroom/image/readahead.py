"""Reading an NBD disk ahead of its consumers: a fixed number of large READs in flight.

The calling thread groups adjacent chunk indexes into runs of up to ``span`` bytes, takes a
free buffer, and submits one READ per run, never more than ``depth`` unanswered; worker
threads take the runs in order, wait for their data and hand each chunk to ``handle``, then
give the buffer back.  So the server always has ``depth`` requests queued however long the
handling takes, and memory is bounded by ``depth + workers`` buffers.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Protocol, runtime_checkable

from strongroom.anonmem import anonymous_map

__all__ = ["AsyncReads", "read_ahead", "runs"]

Handler = Callable[[int, memoryview], None]
Progress = Callable[[int], None]
# (first chunk index, chunk count, offset, length)
Run = tuple[int, int, int, int]


@runtime_checkable
class AsyncReads(Protocol):
    """A disk that can start a READ and wait for it later (the NBD disks)."""

    @property
    def max_request(self) -> int: ...

    def submit_read(self, offset: int, view: memoryview) -> Future[int]: ...
    def wait_read(self, future: Future[int]) -> None: ...


def runs(indexes: Iterable[int], chunk_size: int, span: int, end: int) -> Iterator[Run]:
    """Adjacent chunk indexes grouped into reads of at most ``span`` bytes (at least one
    chunk), clipped to ``end``."""
    per_run = max(1, span // chunk_size)
    first, count = -1, 0
    for index in indexes:
        if count and index == first + count and count < per_run:
            count += 1
            continue
        if count:
            yield _run(first, count, chunk_size, end)
        first, count = index, 1
    if count:
        yield _run(first, count, chunk_size, end)


def _run(first: int, count: int, chunk_size: int, end: int) -> Run:
    offset = first * chunk_size
    return first, count, offset, min(count * chunk_size, end - offset)


class _Pipeline:
    def __init__(self, buffers: int, size: int, depth: int) -> None:
        self.free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        for _ in range(buffers):
            self.free.put(memoryview(anonymous_map(size)))  # pages touched only as filled
        self.ready: queue.SimpleQueue[tuple[Run, memoryview, Future[int]] | None] = (
            queue.SimpleQueue()
        )
        self.in_flight = threading.BoundedSemaphore(depth)
        self.error: BaseException | None = None
        self.lock = threading.Lock()

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = exc


def read_ahead(
    disk: AsyncReads,
    chunk_size: int,
    indexes: Iterable[int],
    handle: Handler,
    end: int,
    workers: int,
    span: int,
    depth: int,
    progress: Progress | None = None,
) -> None:
    """Read every chunk of ``indexes`` ahead and ``handle`` it from ``workers`` threads;
    the first error stops the reads and is raised here."""
    span = max(chunk_size, min(span, disk.max_request))
    pipe = _Pipeline(depth + workers, span, depth)

    def work() -> None:
        while (item := pipe.ready.get()) is not None:
            (first, count, _, length), buf, future = item
            try:
                try:
                    disk.wait_read(future)
                finally:
                    pipe.in_flight.release()
                if pipe.error is None:
                    _handle_run(buf[:length], first, count, chunk_size, handle, progress)
            except BaseException as exc:
                pipe.fail(exc)
            finally:
                pipe.free.put(buf)

    threads = [threading.Thread(target=work, name=f"disk-io-{n}") for n in range(workers)]
    for t in threads:
        t.start()
    try:
        for run in runs(indexes, chunk_size, span, end):
            buf = pipe.free.get()
            pipe.in_flight.acquire()
            if pipe.error is not None:
                break
            future = disk.submit_read(run[2], buf[: run[3]])
            pipe.ready.put((run, buf, future))
    except BaseException as exc:  # a failed submit, or Ctrl-C: stop the workers first
        pipe.fail(exc)
    finally:
        for _ in threads:
            pipe.ready.put(None)
        for t in threads:
            t.join()
    if pipe.error is not None:
        raise pipe.error


def _handle_run(
    view: memoryview,
    first: int,
    count: int,
    chunk_size: int,
    handle: Handler,
    progress: Progress | None,
) -> None:
    for k in range(count):
        piece = view[k * chunk_size : (k + 1) * chunk_size]
        if not piece:
            return
        handle(first + k, piece)
        if progress is not None:
            progress(len(piece))
