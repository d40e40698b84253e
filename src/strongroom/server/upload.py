"""Reading an upload's body: size limit, timeouts, and where the bytes go.

A body is received on the event loop in the pieces the HTTP parser hands over (tens of KiB).
Small objects and backends without a streaming API collect it in memory (:class:`MemorySink`);
packs on a backend that can write an object piece by piece (the local one's ``open_stream``)
go to the backend's temporary file in batches of :data:`BATCH` bytes as they arrive, hashed on
the way (:class:`StreamSink`), so the server never holds a whole pack and the disk write
overlaps the network.  The name is given only after the hash matched (the gateway checks it).

The idle timeout is one ``asyncio.timeout`` rescheduled per piece, not a ``wait_for`` (a task)
per piece: at 64 KiB pieces the latter cost more CPU than the rest of the upload path.
"""

from __future__ import annotations

import asyncio
import mmap
from typing import Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from strongroom.server.auth import ApiError
from strongroom.storage.directio import ALIGN
from strongroom.storage.names import content_hasher

BATCH = 4 * 1024 * 1024
"""Bytes a streamed upload gathers before writing them (aligned for direct I/O)."""


class Sink(Protocol):
    def add(self, piece: bytes) -> None: ...

    async def flush(self) -> None:
        """Pass on what :meth:`add` gathered, if it is time to."""


class StoreStream(Protocol):
    """The backend's piece-by-piece writer (``LocalStream``)."""

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def commit(self, name: str) -> None: ...

    def abort(self) -> None: ...


class Held:
    """Bytes of request bodies the server holds in memory now, and the most it ever held."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def add(self, n: int) -> None:
        self.now += n
        self.peak = max(self.peak, self.now)


class MemorySink:
    """The whole body in memory (small objects; backends that take whole objects)."""

    def __init__(self, held: Held) -> None:
        self.buf = bytearray()
        self._held = held

    def add(self, piece: bytes) -> None:
        self.buf += piece
        self._held.add(len(piece))

    async def flush(self) -> None:
        return None

    def release(self) -> None:
        self._held.now -= len(self.buf)
        self.buf = bytearray()


class StreamSink:
    """The body written to a backend stream in aligned batches, hashed as it goes."""

    def __init__(self, stream: StoreStream, held: Held) -> None:
        self.stream = stream
        self.hasher = content_hasher()
        self.size = 0
        self._held = held
        self._buf = mmap.mmap(-1, BATCH)  # page-aligned: the batch can go to disk direct
        self._fill = 0
        self._rest = memoryview(b"")
        held.add(BATCH)

    def add(self, piece: bytes) -> None:
        self._rest = self._take(memoryview(piece))

    def _take(self, view: memoryview) -> memoryview:
        """Copy what fits into the batch; the rest."""
        n = min(len(view), BATCH - self._fill)
        self._buf[self._fill : self._fill + n] = view[:n]
        self._fill += n
        return view[n:]

    async def flush(self) -> None:
        while self._fill == BATCH:  # a full batch: write it off the event loop
            await run_in_threadpool(self._write, BATCH)
            self._rest = self._take(self._rest)

    async def finish(self) -> bytes:
        """Write the rest; the digest of everything written."""
        await self.flush()
        if self._fill:
            await run_in_threadpool(self._write, self._fill)
        return bytes(self.hasher.digest())

    def _write(self, n: int) -> None:
        batch = memoryview(self._buf)[:n]
        try:
            self.hasher.update(batch)
            self.stream.write(batch)
        finally:
            batch.release()
        self.size += n
        self._fill = 0

    def close(self) -> None:
        """Give the batch buffer back (after commit or abort of the stream)."""
        if not self._buf.closed:
            self._buf.close()
            self._held.now -= BATCH


assert BATCH % ALIGN == 0


async def receive(
    request: Request, sink: Sink, *, limit: int, idle_timeout: float, total_timeout: float
) -> int:
    """Pass the body to ``sink``; its size.  413 when larger than ``limit``, 408 when it
    stalls for ``idle_timeout`` seconds or takes longer than ``total_timeout``."""
    too_large = ApiError(413, f"upload larger than the server's limit of {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > 2 * limit):
        raise too_large
    # An oversized body up to twice the limit is read and dropped before the refusal:
    # a client still sending when the server closes sees a reset, not the reason.
    seen = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total_timeout
    try:
        async with asyncio.timeout(min(deadline, loop.time() + idle_timeout)) as timer:
            async for piece in request.stream():
                timer.reschedule(min(deadline, loop.time() + idle_timeout))
                seen += len(piece)
                if seen > 2 * limit:
                    raise too_large
                if seen <= limit:
                    sink.add(piece)
                    await sink.flush()
    except TimeoutError:
        raise ApiError(408, "upload too slow: the request body timed out") from None
    if seen > limit:
        raise too_large
    return seen
