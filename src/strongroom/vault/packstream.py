"""The streamed part of a pack: its bytes written out in the background as the pack fills.

A :class:`~strongroom.vault.pack.PackBuilder` with a stream keeps two small buffers: while one
segment is written (and hashed into the pack's name) by the upload pool, blobs go into the
other.  So memory per builder is two windows instead of a whole pack, and the disk write never
happens under the writer's pack lock.  At most one segment per pack is in flight, and each
waits for the one before it, so the sink sees the pack's bytes in order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol

from strongroom import failpoints
from strongroom.storage.names import content_hasher

__all__ = ["PackSink", "PackStream", "Run"]


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
        self._pending: Future[None] | None = None

    def reset(self) -> None:
        self.sink, self.hasher, self._pending = None, content_hasher(), None

    def write_segment(self, segment: memoryview) -> None:
        """Queue ``segment``; the caller leaves its bytes alone until :meth:`wait` returns."""
        self.wait()
        if self.sink is None:
            self.sink = self._open_sink()
        sink, hasher = self.sink, self.hasher

        def task() -> None:
            try:
                failpoints.hit("pack-segment")
                hasher.update(segment)
                sink.write(segment)
            finally:
                segment.release()

        self._pending = self._run(task)

    def wait(self) -> None:
        """Until the queued segment is written; raises its error, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def finish(self, tail: memoryview, name_of: Callable[[bytes], str]) -> bytes:
        """Write the pack's last bytes and name it; returns the pack id (its name hash)."""
        self.wait()
        assert self.sink is not None
        self.hasher.update(tail)
        self.sink.write(tail)
        pack_id = self.hasher.digest()
        self.sink.commit(name_of(pack_id))
        self.sink = None
        return pack_id

    def abort(self) -> None:
        """Drop the pack: wait out any write in flight, remove the temporary file."""
        with contextlib.suppress(BaseException):
            self.wait()
        if self.sink is not None:
            self.sink.abort()
            self.sink = None
