"""A pipelining NBD client over blocking sockets.

Callers (any number of threads) send requests under a send lock; one reader thread receives
every reply and completes the matching future.  A semaphore bounds the requests in flight so
a caller can queue many reads without flooding the server.  Requests larger than the server's
maximum block size are split.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, wait
from types import TracebackType
from typing import Any, Final

from strongroom.errors import NBDError
from strongroom.image.nbd import protocol as p
from strongroom.image.nbd.negotiate import (
    Address,
    ExportInfo,
    connect_socket,
    describe_address,
    handshake,
    list_exports_at,
)
from strongroom.image.nbd.replies import Pending, ReplyReader
from strongroom.records import dataclass

__all__ = ["NBDClient", "ReadCounts", "list_exports_at"]

# command, flags, offset, length, payload to send, buffer to read into
_Request = tuple[int, int, int, int, memoryview | None, memoryview | None]
_STATUS_STEP: Final = 1 << 31  # block status is cheap: ask for big ranges (servers may cut)


@dataclass
class ReadCounts:
    """READ requests sent on one connection: how many, their bytes, the largest, and the
    most requests unanswered at once (what a server sees of a client's queue)."""

    requests: int = 0
    bytes: int = 0
    largest: int = 0
    max_in_flight: int = 0

    def count(self, length: int, in_flight: int) -> None:
        self.requests += 1
        self.bytes += length
        self.largest = max(self.largest, length)
        self.max_in_flight = max(self.max_in_flight, in_flight)


class NBDClient:
    """One connection to one export; thread-safe, with pipelined requests.

    ``meta_contexts`` are selected during the handshake (e.g. ``"base:allocation"``,
    ``"qemu:dirty-bitmap:NAME"``); a context the server does not offer is an NBDError.
    """

    def __init__(
        self,
        address: Address,
        export: str = "",
        *,
        meta_contexts: Iterable[str] = (),
        max_in_flight: int = 16,
        timeout: float = 10.0,
        structured: bool = True,
    ) -> None:
        self.address = address
        self._sock = connect_socket(address, timeout)
        try:
            self.info: ExportInfo = handshake(self._sock, export, tuple(meta_contexts), structured)
        except (OSError, NBDError) as exc:
            self._sock.close()
            if isinstance(exc, NBDError):
                raise
            raise NBDError(f"NBD handshake with {describe_address(address)} failed: {exc}") from exc
        self._sock.settimeout(None)  # transmission: requests may legitimately take long
        self._context_names = {cid: name for name, cid in self.info.contexts.items()}
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending: dict[int, Pending] = {}
        self._cookies = itertools.count(1)
        self._window = threading.Semaphore(max_in_flight)
        self.reads = ReadCounts()
        self._broken: NBDError | None = None
        self._closing = False
        self._reader = threading.Thread(target=self._read_loop, name="nbd-reply-reader")
        self._reader.daemon = True
        self._reader.start()

    # --- export properties -----------------------------------------------------------------

    @property
    def size(self) -> int:
        return self.info.size

    @property
    def flags(self) -> int:
        return self.info.flags

    @property
    def block_size(self) -> p.BlockSize:
        return self.info.block_size

    @property
    def max_request(self) -> int:
        """Largest READ/WRITE payload sent in one request."""
        return min(self.info.block_size.maximum or p.DEFAULT_MAX_BLOCK, p.DEFAULT_MAX_BLOCK)

    @property
    def read_only(self) -> bool:
        return bool(self.flags & p.TFLAG_READ_ONLY)

    @property
    def can_flush(self) -> bool:
        return bool(self.flags & p.TFLAG_SEND_FLUSH)

    @property
    def can_fua(self) -> bool:
        return bool(self.flags & p.TFLAG_SEND_FUA)

    @property
    def can_trim(self) -> bool:
        return bool(self.flags & p.TFLAG_SEND_TRIM)

    @property
    def can_write_zeroes(self) -> bool:
        return bool(self.flags & p.TFLAG_SEND_WRITE_ZEROES)

    @property
    def can_fast_zero(self) -> bool:
        return bool(self.flags & p.TFLAG_SEND_FAST_ZERO)

    @property
    def can_df(self) -> bool:
        return bool(self.flags & p.TFLAG_SEND_DF)

    @property
    def can_multi_conn(self) -> bool:
        return bool(self.flags & p.TFLAG_CAN_MULTI_CONN)

    @property
    def meta_contexts(self) -> dict[str, int]:
        return dict(self.info.contexts)

    # --- request machinery -----------------------------------------------------------------

    def _submit(
        self,
        command: int,
        flags: int,
        offset: int,
        length: int,
        payload: memoryview | None = None,
        buf: memoryview | None = None,
    ) -> Future[Any]:
        pending = Pending(command, offset, length, buf=buf)
        cookie = next(self._cookies)
        self._window.acquire()
        with self._lock:
            if self._broken is not None or self._closing:
                self._window.release()
                raise self._broken or NBDError("NBD client is closed")
            self._pending[cookie] = pending
            if command == p.CMD_READ:
                self.reads.count(length, len(self._pending))
        header = p.REQUEST.pack(p.REQUEST_MAGIC, flags, command, cookie, offset, length)
        try:
            with self._send_lock:
                self._sock.sendall(header)
                if payload is not None:
                    self._sock.sendall(payload)
        except OSError as exc:
            self._break(NBDError(f"NBD connection to {describe_address(self.address)} lost: {exc}"))
        return pending.future

    def _lookup(self, cookie: int) -> Pending:
        with self._lock:
            pending = self._pending.get(cookie)
        if pending is None:
            raise NBDError(f"NBD server replied to unknown cookie {cookie}")
        return pending

    def _finish(self, cookie: int, pending: Pending) -> None:
        with self._lock:
            if self._pending.pop(cookie, None) is None:
                return  # already failed by _break
            if not self._pending:
                self._idle.notify_all()
        self._window.release()
        if pending.error is not None:
            pending.future.set_exception(pending.error)
        elif pending.command == p.CMD_READ and pending.received != pending.length:
            pending.future.set_exception(
                NBDError(
                    f"NBD server sent {pending.received} of {pending.length} bytes "
                    f"for READ at offset {pending.offset}"
                )
            )
        elif pending.command == p.CMD_BLOCK_STATUS:
            names = self._context_names
            pending.future.set_result({names.get(c, str(c)): e for c, e in pending.extents.items()})
        else:
            pending.future.set_result(pending.length)

    def _read_loop(self) -> None:
        reader = ReplyReader(self._sock, self.info.structured, self._lookup)
        try:
            while True:
                cookie, pending, done = reader.next_reply()
                if done:
                    self._finish(cookie, pending)
        except Exception as exc:  # any failure here must fail the waiters, not hang them
            reason = "closed" if self._closing else f"lost: {exc}"
            self._break(NBDError(f"NBD connection to {describe_address(self.address)} {reason}"))

    def _break(self, error: NBDError) -> None:
        """Fail every request in flight and refuse new ones (hard disconnect)."""
        with self._lock:
            if self._broken is None:
                self._broken = error
            failed = list(self._pending.values())
            self._pending.clear()
            self._idle.notify_all()
        for pending in failed:
            self._window.release()
            if not pending.future.done():
                pending.future.set_exception(error)
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def _pipeline(self, requests: Iterable[_Request]) -> None:
        """Submit requests (at most max_in_flight outstanding) and wait for all of them.

        Every submitted request is waited for even when a later submit fails, so no reply
        can land in a caller's buffer after we return; then the first error is raised.
        """
        futures: list[Future[Any]] = []
        try:
            for request in requests:
                futures.append(self._submit(*request))
        finally:
            wait(futures)
        for future in futures:
            future.result()

    def _require(self, flag: int, what: str) -> None:
        if not self.flags & flag:
            raise NBDError(f"NBD export {self.info.name!r} does not support {what}")

    def _require_writable(self) -> None:
        if self.read_only:
            raise NBDError(f"NBD export {self.info.name!r} is read-only")

    # --- reads -----------------------------------------------------------------------------

    def submit_read(self, offset: int, length: int, buf: Any) -> Future[int]:
        """Start one READ of ``length`` bytes into ``buf[:length]``; the future gives length.

        ``buf`` must stay alive and untouched until the future is done.
        """
        view = p.byte_view(buf, writable=True)
        if length > len(view):
            raise NBDError(f"read buffer of {len(view)} bytes is smaller than {length}")
        if length > self.max_request:
            raise NBDError(f"read of {length} bytes exceeds the maximum {self.max_request}")
        return self._submit(p.CMD_READ, self._read_flags, offset, length, buf=view[:length])

    @property
    def _read_flags(self) -> int:
        """DF ("don't fragment") where offered: the reply is one data chunk, and QEMU skips
        the block-status query it otherwise makes on every READ to send holes as such (our
        reads are of extents already known to hold data)."""
        return p.CMD_FLAG_DF if self.can_df and self.info.structured else 0

    def read_into(self, offset: int, buf: Any) -> None:
        """Fill ``buf`` from ``offset``, pipelining max-block-size requests."""
        view = p.byte_view(buf, writable=True)
        flags = self._read_flags
        self._pipeline(
            (p.CMD_READ, flags, off, n, None, view[off - offset : off - offset + n])
            for off, n in p.spans(offset, len(view), self.max_request)
        )

    def pread(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset`` (allocates; prefer read_into for bulk)."""
        buf = bytearray(length)
        self.read_into(offset, buf)
        return bytes(buf)

    # --- writes ----------------------------------------------------------------------------

    def write(self, offset: int, data: Any, *, fua: bool = False) -> None:
        """Write ``data`` at ``offset``, pipelining max-block-size requests."""
        self._require_writable()
        view = p.byte_view(data, writable=False)
        flags = p.CMD_FLAG_FUA if fua and self.can_fua else 0
        self._pipeline(
            (p.CMD_WRITE, flags, off, n, view[off - offset : off - offset + n], None)
            for off, n in p.spans(offset, len(view), self.max_request)
        )

    def submit_write(self, offset: int, data: Any) -> Future[int]:
        """Start one WRITE of ``data`` (at most :attr:`max_request` bytes); don't wait.

        ``data`` must stay alive and unchanged until the future is done.
        """
        self._require_writable()
        view = p.byte_view(data, writable=False)
        if len(view) > self.max_request:
            raise NBDError(f"write of {len(view)} bytes exceeds the maximum {self.max_request}")
        return self._submit(p.CMD_WRITE, 0, offset, len(view), view, None)

    def write_zeroes(
        self,
        offset: int,
        length: int,
        *,
        no_hole: bool = False,
        fast: bool = False,
        fua: bool = False,
    ) -> None:
        """Zero a range.  ``no_hole`` keeps it allocated; ``fast`` fails with ENOTSUP
        (:class:`NBDCommandError`) unless the server can zero faster than writing."""
        self._require_writable()
        if not self.can_write_zeroes:
            if fast:
                raise p.NBDCommandError(
                    "server cannot zero fast", error=p.ENOTSUP, command="WRITE_ZEROES"
                )
            self._write_zero_buffers(offset, length, fua)
            return
        flags = p.CMD_FLAG_NO_HOLE if no_hole else 0
        if fast:
            self._require(p.TFLAG_SEND_FAST_ZERO, "fast zeroes")
            flags |= p.CMD_FLAG_FAST_ZERO
        if fua and self.can_fua:
            flags |= p.CMD_FLAG_FUA
        self._pipeline(
            (p.CMD_WRITE_ZEROES, flags, off, n, None, None)
            for off, n in p.spans(offset, length, self.max_request)
        )

    def _write_zero_buffers(self, offset: int, length: int, fua: bool) -> None:
        zeros = memoryview(bytes(min(length, self.max_request)))
        for off, n in p.spans(offset, length, len(zeros)):
            self.write(off, zeros[:n], fua=fua)

    def trim(self, offset: int, length: int, *, fua: bool = False) -> None:
        """Tell the server the range is no longer needed (it may punch a hole)."""
        self._require_writable()
        self._require(p.TFLAG_SEND_TRIM, "trim")
        flags = p.CMD_FLAG_FUA if fua and self.can_fua else 0
        self._pipeline(
            (p.CMD_TRIM, flags, off, n, None, None)
            for off, n in p.spans(offset, length, self.max_request)
        )

    def flush(self) -> None:
        """Make every completed write durable on the server."""
        self._require(p.TFLAG_SEND_FLUSH, "flush")
        self._submit(p.CMD_FLUSH, 0, 0, 0).result()

    # --- block status ----------------------------------------------------------------------

    def block_status(
        self, offset: int, length: int, *, req_one: bool = False
    ) -> dict[str, list[p.Extent]]:
        """One BLOCK_STATUS request: extents per selected context (may cover less than asked)."""
        if not self.info.contexts:
            raise NBDError("block status needs meta contexts selected at connect time")
        flags = p.CMD_FLAG_REQ_ONE if req_one else 0
        result: dict[str, list[p.Extent]] = self._submit(
            p.CMD_BLOCK_STATUS, flags, offset, min(length, _STATUS_STEP)
        ).result()
        return result

    def extents(
        self, context: str, offset: int = 0, length: int | None = None
    ) -> Iterator[p.Extent]:
        """Walk ``[offset, offset + length)`` (default: to the end) with repeated queries."""
        if context not in self.info.contexts:
            raise NBDError(f"meta context {context!r} was not selected at connect time")
        end = self.size if length is None else offset + length
        while offset < end:
            found = self.block_status(offset, end - offset).get(context)
            if not found:
                raise NBDError(f"NBD server returned no {context} extents at offset {offset}")
            yield from found
            offset = found[-1].end

    # --- lifetime --------------------------------------------------------------------------

    def close(self, timeout: float = 30.0) -> None:
        """Wait for requests in flight, send DISC (soft disconnect) and close the socket."""
        with self._lock:
            if self._closing:
                return
            self._idle.wait_for(lambda: not self._pending, timeout)
            self._closing = True
            healthy = self._broken is None
        if healthy:
            with contextlib.suppress(OSError), self._send_lock:
                self._sock.sendall(p.REQUEST.pack(p.REQUEST_MAGIC, 0, p.CMD_DISC, 0, 0, 0))
                self._sock.shutdown(socket.SHUT_WR)
        self._reader.join(5.0)  # the server closes after DISC; don't hang if it doesn't
        self._break(NBDError("NBD client is closed"))
        self._sock.close()

    def __enter__(self) -> NBDClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
