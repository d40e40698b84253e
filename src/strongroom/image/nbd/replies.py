"""Client-side reply decoding: one reader thread turns the server's reply stream into results.

Each request in flight is a :class:`Pending` keyed by its cookie.  Read payloads go straight
from the socket into the caller's buffer with ``recv_into`` (no intermediate copies), which is
what makes pipelined 1 MiB reads fast in pure Python.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import field
from typing import Any, Final

from strongroom.errors import NBDError
from strongroom.image.nbd import protocol as p
from strongroom.records import dataclass

__all__ = ["Pending", "ReplyReader"]

_ZEROS: Final = memoryview(bytes(1 << 20))
_MAX_STATUS_PAYLOAD: Final = 64 << 20  # sanity bound on one block status chunk


def zero_fill(view: memoryview) -> None:
    """Zero ``view`` in place by copying from a shared zero block (no allocation)."""
    for pos in range(0, len(view), len(_ZEROS)):
        n = min(len(_ZEROS), len(view) - pos)
        view[pos : pos + n] = _ZEROS[:n]


@dataclass(slots=True)
class Pending:
    """A request waiting for its reply."""

    command: int
    offset: int
    length: int
    future: Future[Any] = field(default_factory=Future)
    buf: memoryview | None = None  # READ destination
    received: int = 0  # READ bytes covered by data and hole chunks
    error: p.NBDCommandError | None = None
    extents: dict[int, list[p.Extent]] = field(default_factory=dict)  # context id -> extents

    def fail(self, code: int, message: str) -> None:
        name = p.CMD_NAMES.get(self.command, str(self.command))
        text = f"NBD {name} at offset {self.offset} length {self.length} failed: "
        text += p.wire_error_name(code) + (f": {message}" if message else "")
        if self.error is None:  # keep the first error: later ones are usually consequences
            self.error = p.NBDCommandError(text, error=code, command=name)


class ReplyReader:
    """Decodes one reply message at a time; protocol violations raise NBDError."""

    def __init__(
        self, sock: socket.socket, structured: bool, lookup: Callable[[int], Pending]
    ) -> None:
        self.sock = sock
        self.structured = structured
        self.lookup = lookup  # raises NBDError for unknown cookies
        self._header = bytearray(p.STRUCTURED_REPLY.size)
        self._small = bytearray(16)

    def next_reply(self) -> tuple[int, Pending, bool]:
        """Read one reply or chunk; returns (cookie, pending, done)."""
        view = memoryview(self._header)
        p.recv_into(self.sock, view[: p.SIMPLE_REPLY.size])
        magic = p.U32.unpack_from(view)[0]
        if magic == p.SIMPLE_REPLY_MAGIC:
            return self._simple()
        if magic == p.STRUCTURED_REPLY_MAGIC and self.structured:
            p.recv_into(self.sock, view[p.SIMPLE_REPLY.size :])
            return self._chunk()
        raise NBDError(f"bad reply magic {magic:#x}")

    def _simple(self) -> tuple[int, Pending, bool]:
        _, error, cookie = p.SIMPLE_REPLY.unpack_from(self._header)
        pending = self.lookup(cookie)
        if error:
            pending.fail(error, "")
        elif pending.command == p.CMD_READ:
            if self.structured:
                raise NBDError("simple reply with data to READ after structured replies")
            assert pending.buf is not None
            p.recv_into(self.sock, pending.buf[: pending.length])
            pending.received = pending.length
        return cookie, pending, True

    def _chunk(self) -> tuple[int, Pending, bool]:
        _, flags, rtype, cookie, length = p.STRUCTURED_REPLY.unpack_from(self._header)
        pending = self.lookup(cookie)
        if rtype == p.REPLY_TYPE_OFFSET_DATA:
            self._data(pending, length)
        elif rtype == p.REPLY_TYPE_OFFSET_HOLE:
            self._hole(pending, length)
        elif rtype == p.REPLY_TYPE_BLOCK_STATUS:
            self._block_status(pending, length)
        elif rtype & p.REPLY_TYPE_ERROR_BIT:
            self._error(pending, rtype, length)
        elif rtype != p.REPLY_TYPE_NONE or length:
            raise NBDError(f"unexpected structured reply type {rtype} (length {length})")
        return cookie, pending, bool(flags & p.REPLY_FLAG_DONE)

    def _target(self, pending: Pending, offset: int, size: int) -> memoryview:
        """The part of the caller's buffer a content chunk fills, after bounds checks."""
        start = offset - pending.offset
        if pending.command != p.CMD_READ or pending.buf is None:
            raise NBDError("content chunk in reply to a command other than READ")
        if start < 0 or size <= 0 or start + size > pending.length:
            raise NBDError(f"content chunk [{offset}, +{size}) outside the requested range")
        pending.received += size
        return pending.buf[start : start + size]

    def _data(self, pending: Pending, length: int) -> None:
        if length < 9:
            raise NBDError(f"OFFSET_DATA chunk of length {length}")
        small = memoryview(self._small)
        p.recv_into(self.sock, small[:8])
        offset = p.U64.unpack_from(small)[0]
        p.recv_into(self.sock, self._target(pending, offset, length - 8))

    def _hole(self, pending: Pending, length: int) -> None:
        if length != p.HOLE_CHUNK.size:
            raise NBDError(f"OFFSET_HOLE chunk of length {length}")
        small = memoryview(self._small)
        p.recv_into(self.sock, small[: p.HOLE_CHUNK.size])
        offset, size = p.HOLE_CHUNK.unpack_from(small)
        zero_fill(self._target(pending, offset, size))

    def _block_status(self, pending: Pending, length: int) -> None:
        if pending.command != p.CMD_BLOCK_STATUS:
            raise NBDError("BLOCK_STATUS chunk in reply to another command")
        if length < 12 or (length - 4) % 8 or length > _MAX_STATUS_PAYLOAD:
            raise NBDError(f"BLOCK_STATUS chunk of length {length}")
        data = p.recv_exact(self.sock, length)
        context_id = p.U32.unpack_from(data)[0]
        end = pending.offset + pending.length
        extents: list[p.Extent] = []
        offset = pending.offset
        for size, flags in p.EXTENT.iter_unpack(memoryview(data)[4:]):
            if size == 0:
                raise NBDError("BLOCK_STATUS extent of length 0")
            if offset < end:  # clip rather than reject a server that overshoots the range
                extents.append(p.Extent(offset, min(size, end - offset), flags))
            offset += size
        pending.extents[context_id] = extents

    def _error(self, pending: Pending, rtype: int, length: int) -> None:
        if length < p.ERROR_CHUNK.size:
            raise NBDError(f"error chunk of length {length}")
        data = p.recv_exact(self.sock, length)
        code, msg_len = p.ERROR_CHUNK.unpack_from(data)
        if p.ERROR_CHUNK.size + msg_len > length:
            raise NBDError("error chunk message longer than the chunk")
        message = data[p.ERROR_CHUNK.size : p.ERROR_CHUNK.size + msg_len]
        text = message.decode(errors="replace")
        if rtype == p.REPLY_TYPE_ERROR_OFFSET and length >= p.ERROR_CHUNK.size + msg_len + 8:
            where = p.U64.unpack_from(data, p.ERROR_CHUNK.size + msg_len)[0]
            text = f"{text} (at offset {where})" if text else f"at offset {where}"
        pending.fail(code or p.EIO, text)
