"""The streamed part of a pack: its bytes written out in the background as the pack fills.

A :class:`~strongroom.vault.pack.PackBuilder` with a stream keeps small buffers
(:class:`SegmentBuffers`): while a segment is written (and hashed into the pack's name) by the
upload pool, blobs go into another.  So memory per builder is a few windows instead of a whole
pack, and the disk write never happens under the writer's pack lock.  Each segment's write
waits for the one before it, so the sink sees the pack's bytes in order.

Up to :data:`MOST_BUFFERS` buffers a builder, so up to three segments in flight, but a new
buffer only when none is free: where the disk keeps up the segment before is written by the
time the next is full, and a builder touches two buffers as it always did.  With one segment
in flight a writer whose disk fell behind waited under its pack lock, and every thread
putting a chunk with it: a first backup of the 2 GiB image waited 0.93-0.98 s there in all
(741 segments) on a machine whose virtual disk takes 1-2 ms for a 512 KiB direct write, and
took 3.2-4.2 s against 2.8 s with the vault in memory (docs/benchmarks.md, "Session 43").
"""

from __future__ import annotations

import contextlib
import mmap
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol

from strongroom import failpoints
from strongroom.storage.names import content_hasher

__all__ = ["MOST_BUFFERS", "PackSink", "PackStream", "Run", "SegmentBuffers"]

MOST_BUFFERS = 4
"""Buffers a streaming builder may hold: one filling, the others' segments being written."""


class PackSink(Protocol):
    """Where a streamed pack's bytes go (the local backend's temporary file)."""

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def commit(self, name: str) -> None: ...

    def abort(self) -> None: ...


Run = Callable[[Callable[[], None]], "Future[None]"]
"""Runs a task in the background (the writer's upload pool)."""


class PackStream:
    """One builder's stream; reset for every pack."""

    def __init__(self, open_sink: Callable[[], PackSink], run: Run) -> None:
        self._open_sink, self._run = open_sink, run
        self.sink: PackSink | None = None
        self.hasher = content_hasher()
        self._pending: deque[Future[None]] = deque()

    def reset(self) -> None:
        self.sink, self.hasher, self._pending = None, content_hasher(), deque()

    def write_segment(self, segment: memoryview) -> Future[None]:
        """Queue ``segment`` behind those queued before; the caller leaves its bytes alone
        until the returned future is done (or :meth:`wait` returns)."""
        if self.sink is None:
            self.sink = self._open_sink()
        sink, hasher = self.sink, self.hasher
        before = self._pending[-1] if self._pending else None

        def task() -> None:
            try:
                if before is not None:
                    # in order: the file is appended to, and its name hashes the bytes in
                    # order; a segment before that failed fails this one, unwritten
                    before.result()
                failpoints.hit("pack-segment")
                hasher.update(segment)
                sink.write(segment)
            finally:
                segment.release()

        done = self._run(task)
        self._pending.append(done)
        return done

    def wait(self) -> None:
        """Until every queued segment is written; raises the first one's error, if any (those
        behind it fail unwritten).  ``result`` one by one, not ``concurrent.futures.wait``: a
        segment the upload pool's shutdown cancelled before it ran is never done for ``wait``,
        which then waited for ever (an interrupted backup), while its ``result`` raises."""
        pending, self._pending = self._pending, deque()
        for done in pending:
            done.result()

    def close_out(self, tail: memoryview) -> tuple[bytes, PackSink]:
        """Write the pack's last bytes; returns its id (its name hash) and the sink, which the
        caller commits under the pack's name (or aborts).  The stream is free for the next
        pack: committing (fsync, rename, the folder's fsync) is left to the caller so that
        it need not hold up the next pack's writes (writer.py)."""
        self.wait()
        assert self.sink is not None
        self.hasher.update(tail)
        self.sink.write(tail)
        sink, self.sink = self.sink, None
        return self.hasher.digest(), sink

    def abort(self) -> None:
        """Drop the pack: wait out any write in flight, remove the temporary file."""
        with contextlib.suppress(BaseException):
            self.wait()
        if self.sink is not None:
            self.sink.abort()
            self.sink = None


class SegmentBuffers:
    """A streaming builder's spare buffers: those free, and those whose segment is queued
    (oldest first).  Used under the writer's pack lock, like the builder."""

    def __init__(self, capacity: int, new_buffer: Callable[[int], mmap.mmap]) -> None:
        self._capacity, self._new = capacity, new_buffer
        self._free = [new_buffer(capacity)]
        self._out: deque[tuple[mmap.mmap, Future[None]]] = deque()

    def queued(self, buf: mmap.mmap, written: Future[None]) -> None:
        """``buf`` holds a segment being written; it is free once ``written`` is done."""
        self._out.append((buf, written))

    def spare(self) -> mmap.mmap:
        """A buffer to go on filling: one whose segment is written, else a new one while the
        builder has fewer than :data:`MOST_BUFFERS` (the disk is behind), else the oldest
        once its segment is written.  Raises a write's error."""
        out = self._out
        while out and out[0][1].done():
            buf, written = out.popleft()
            self._free.append(buf)
            written.result()  # a failed write stops the pack here
        if self._free:
            return self._free.pop()
        if len(out) + 2 <= MOST_BUFFERS:  # itself, the one filling, those queued
            return self._new(self._capacity)
        buf, written = out.popleft()
        written.result()
        return buf

    def settle(self) -> None:
        """Every queued segment is written (or the pack abandoned): all buffers are free."""
        self._free += [buf for buf, _ in self._out]
        self._out.clear()

    def all(self) -> list[mmap.mmap]:
        return self._free + [buf for buf, _ in self._out]
