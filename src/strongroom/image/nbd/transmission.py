"""Server side of the transmission phase: decode requests, call the export, send replies.

With structured replies, READ answers holes with NBD_REPLY_TYPE_OFFSET_HOLE chunks (no zero
bytes on the wire) and errors carry a message; without them, simple replies are used.  Every
reply is computed before its first byte is sent, so an export failure is always reported as an
error reply and never forces a hard disconnect halfway through a payload.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import Final

from strongroom.errors import NBDError, StrongroomError
from strongroom.image.nbd import protocol as p
from strongroom.image.nbd.exports import Hole, ReadPiece
from strongroom.image.nbd.options import Negotiated, transmission_flags
from strongroom.image.nbd.protocol import Buffer

__all__ = ["Transmission"]

log = logging.getLogger(__name__)

_ZEROS: Final = bytes(1 << 20)
_MAX_EXTENTS: Final = 1 << 16  # per context and reply: keeps a reply under 512 KiB

# Command -> the request flags it accepts.
_ALLOWED_FLAGS: Final = {
    p.CMD_READ: p.CMD_FLAG_FUA | p.CMD_FLAG_DF,
    p.CMD_WRITE: p.CMD_FLAG_FUA,
    p.CMD_FLUSH: p.CMD_FLAG_FUA,
    p.CMD_TRIM: p.CMD_FLAG_FUA,
    p.CMD_WRITE_ZEROES: p.CMD_FLAG_FUA | p.CMD_FLAG_NO_HOLE,
    p.CMD_BLOCK_STATUS: p.CMD_FLAG_FUA | p.CMD_FLAG_REQ_ONE,
}
_WRITES: Final = frozenset({p.CMD_WRITE, p.CMD_TRIM, p.CMD_WRITE_ZEROES})


class _RequestError(Exception):
    """A request the server refuses: becomes an error reply with ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _join(pieces: Sequence[ReadPiece]) -> bytes:
    return b"".join(bytes(x.length) if isinstance(x, Hole) else x for x in pieces)


def _normalise(extents: Sequence[p.Extent], offset: int, length: int) -> list[p.Extent]:
    """Check that extents run contiguously from ``offset``; clip to the range, merge equal."""
    end = offset + length
    out: list[p.Extent] = []
    for extent in extents:
        if extent.offset != offset or extent.length <= 0:
            raise _RequestError(p.EIO, "export returned inconsistent block status")
        size = min(extent.length, end - offset)
        if out and out[-1].flags == extent.flags:
            out[-1] = p.Extent(out[-1].offset, out[-1].length + size, extent.flags)
        else:
            out.append(p.Extent(offset, size, extent.flags))
        offset += size
        if offset >= end or len(out) >= _MAX_EXTENTS:
            break
    if not out:
        raise _RequestError(p.EIO, "export returned no block status")
    return out


class Transmission:
    """Serves one negotiated connection until NBD_CMD_DISC or a broken socket."""

    def __init__(self, sock: socket.socket, session: Negotiated) -> None:
        self.sock = sock
        self.session = session
        self.export = session.export
        self.size = self.export.size
        self.flags = transmission_flags(self.export, session.structured)

    def run(self) -> None:
        header = bytearray(p.REQUEST.size)
        view = memoryview(header)
        while True:
            first = self.sock.recv_into(view)
            if first == 0:
                return  # hung up between requests without NBD_CMD_DISC: common, harmless
            p.recv_into(self.sock, view[first:])
            magic, flags, command, cookie, offset, length = p.REQUEST.unpack(header)
            if magic != p.REQUEST_MAGIC:
                raise NBDError(f"bad request magic {magic:#x}")
            if command == p.CMD_DISC:
                return
            payload = None
            if command == p.CMD_WRITE:
                if length > p.DEFAULT_MAX_BLOCK:
                    p.discard(self.sock, length)  # keep the stream in step, then refuse
                    message = f"write of {length} bytes is too large"
                    p.send_parts(self.sock, self._error(cookie, p.EINVAL, message))
                    continue
                payload = memoryview(bytearray(length))
                p.recv_into(self.sock, payload)
            p.send_parts(self.sock, self._reply(command, flags, cookie, offset, length, payload))

    def _reply(
        self,
        command: int,
        flags: int,
        cookie: int,
        offset: int,
        length: int,
        payload: memoryview | None,
    ) -> list[Buffer]:
        """Carry out one request and build its whole reply.  Socket errors cannot occur in
        here, so every OSError is the export's and becomes an error reply."""
        try:
            self._check(command, flags, offset, length)
            return self._dispatch(command, flags, cookie, offset, length, payload)
        except _RequestError as exc:
            return self._error(cookie, exc.code, str(exc))
        except OSError as exc:
            return self._error(cookie, p.errno_to_wire(exc.errno), exc.strerror or str(exc))
        except StrongroomError as exc:
            return self._error(cookie, p.EIO, str(exc))
        except Exception as exc:  # an export bug must not kill the connection silently
            log.exception("NBD export failed on command %d", command)
            return self._error(cookie, p.EIO, f"internal error: {type(exc).__name__}: {exc}")

    def _check(self, command: int, flags: int, offset: int, length: int) -> None:
        allowed = _ALLOWED_FLAGS.get(command)
        if allowed is None:
            raise _RequestError(p.EINVAL, f"unsupported command {command}")
        if flags & ~allowed or (flags & p.CMD_FLAG_DF and not self.session.structured):
            raise _RequestError(p.EINVAL, f"invalid flags {flags:#x} for command {command}")
        if command in _WRITES and self.export.read_only:
            raise _RequestError(p.EPERM, "export is read-only")
        if command == p.CMD_FLUSH:
            return
        if offset + length > self.size:
            code = p.ENOSPC if command == p.CMD_WRITE else p.EINVAL
            raise _RequestError(
                code, f"range {offset}+{length} is beyond the export size {self.size}"
            )
        if command == p.CMD_READ and length > p.DEFAULT_MAX_BLOCK:
            raise _RequestError(p.EINVAL, f"read of {length} bytes is too large")
        if command == p.CMD_BLOCK_STATUS and (not self.session.contexts or not length):
            raise _RequestError(p.EINVAL, "block status needs a meta context and a length")

    def _dispatch(
        self,
        command: int,
        flags: int,
        cookie: int,
        offset: int,
        length: int,
        payload: memoryview | None,
    ) -> list[Buffer]:
        export = self.export
        if command == p.CMD_READ:
            return self._read(cookie, flags, offset, length)
        if command == p.CMD_BLOCK_STATUS:
            return self._block_status(cookie, flags, offset, length)
        if command == p.CMD_WRITE:
            assert payload is not None
            export.write(offset, payload)
        elif command == p.CMD_WRITE_ZEROES:
            export.write_zeroes(offset, length, punch_hole=not flags & p.CMD_FLAG_NO_HOLE)
        elif command == p.CMD_TRIM:
            export.trim(offset, length)
        if command == p.CMD_FLUSH or flags & p.CMD_FLAG_FUA:
            export.flush()
        return [p.SIMPLE_REPLY.pack(p.SIMPLE_REPLY_MAGIC, 0, cookie)]

    # --- replies ---------------------------------------------------------------------------

    def _chunk_header(self, flags: int, rtype: int, cookie: int, length: int) -> bytes:
        return p.STRUCTURED_REPLY.pack(p.STRUCTURED_REPLY_MAGIC, flags, rtype, cookie, length)

    def _error(self, cookie: int, code: int, message: str) -> list[Buffer]:
        if not self.session.structured:
            return [p.SIMPLE_REPLY.pack(p.SIMPLE_REPLY_MAGIC, code, cookie)]
        text = message.encode()[: p.MAX_STRING]
        body = p.ERROR_CHUNK.pack(code, len(text)) + text
        return [self._chunk_header(p.REPLY_FLAG_DONE, p.REPLY_TYPE_ERROR, cookie, len(body)), body]

    def _read(self, cookie: int, flags: int, offset: int, length: int) -> list[Buffer]:
        pieces = self.export.read(offset, length)
        total = sum(x.length if isinstance(x, Hole) else len(x) for x in pieces)
        if total != length:
            raise _RequestError(p.EIO, f"export returned {total} bytes for a read of {length}")
        if not self.session.structured:
            return self._simple_read(cookie, pieces)
        if flags & p.CMD_FLAG_DF and len(pieces) > 1:
            pieces = [_join(pieces)]  # "don't fragment": one data chunk
        pieces = [x for x in pieces if (x.length if isinstance(x, Hole) else len(x))]
        if not pieces:
            return [self._chunk_header(p.REPLY_FLAG_DONE, p.REPLY_TYPE_NONE, cookie, 0)]
        parts: list[Buffer] = []
        for index, piece in enumerate(pieces):
            done = p.REPLY_FLAG_DONE if index == len(pieces) - 1 else 0
            if isinstance(piece, Hole):
                body = p.HOLE_CHUNK.pack(offset, piece.length)
                parts += [self._chunk_header(done, p.REPLY_TYPE_OFFSET_HOLE, cookie, 12), body]
                offset += piece.length
            else:
                header = self._chunk_header(done, p.REPLY_TYPE_OFFSET_DATA, cookie, len(piece) + 8)
                parts += [header + p.U64.pack(offset), piece]
                offset += len(piece)
        return parts

    def _simple_read(self, cookie: int, pieces: Sequence[ReadPiece]) -> list[Buffer]:
        parts: list[Buffer] = [p.SIMPLE_REPLY.pack(p.SIMPLE_REPLY_MAGIC, 0, cookie)]
        for piece in pieces:
            if not isinstance(piece, Hole):
                parts.append(piece)
                continue
            for start in range(0, piece.length, len(_ZEROS)):
                parts.append(memoryview(_ZEROS)[: min(len(_ZEROS), piece.length - start)])
        return parts

    def _block_status(self, cookie: int, flags: int, offset: int, length: int) -> list[Buffer]:
        bodies = []
        for context_id, name in self.session.contexts:
            extents = _normalise(self.export.block_status(name, offset, length), offset, length)
            if flags & p.CMD_FLAG_REQ_ONE:
                extents = extents[:1]
            body = p.U32.pack(context_id)
            body += b"".join(p.EXTENT.pack(e.length, e.flags) for e in extents)
            bodies.append(body)
        parts: list[Buffer] = []
        for index, body in enumerate(bodies):
            done = p.REPLY_FLAG_DONE if index == len(bodies) - 1 else 0
            parts += [self._chunk_header(done, p.REPLY_TYPE_BLOCK_STATUS, cookie, len(body)), body]
        return parts
