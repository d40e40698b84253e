"""Server side of the fixed newstyle handshake (option haggling).

Answers NBD_OPT_LIST, INFO, GO, EXPORT_NAME, STRUCTURED_REPLY, LIST/SET_META_CONTEXT,
ABORT and, given a TLS context, STARTTLS; every other option gets NBD_REP_ERR_UNSUP.  With
TLS the server is in the protocol's "forced TLS" mode: before STARTTLS every option but
ABORT gets NBD_REP_ERR_TLS_REQD (EXPORT_NAME, which cannot carry an error, hangs up), so
nothing about the exports is told to a client that has not done TLS.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Sequence
from dataclasses import field
from typing import Final, Protocol

from strongroom.errors import NBDError
from strongroom.image.nbd import protocol as p
from strongroom.image.nbd.exports import Export
from strongroom.records import dataclass

__all__ = ["Negotiated", "ServerTLS", "negotiate", "transmission_flags"]

_MAX_OPTION: Final = 64 * 1024  # longer option payloads are refused unread
_SERVER_BLOCK_SIZE: Final = p.BlockSize(1, 4096, p.DEFAULT_MAX_BLOCK)


class ServerTLS(Protocol):
    """What STARTTLS needs: ``ssl.SSLContext`` (certificates) or a PSK context.

    ``wrap_socket`` runs the handshake and returns a socket that takes over ``sock``.
    """

    def wrap_socket(self, sock: socket.socket, server_side: bool = False) -> socket.socket: ...


@dataclass(slots=True)
class Negotiated:
    """The outcome of a successful handshake: what transmission works with."""

    name: str
    export: Export
    structured: bool
    contexts: list[tuple[int, str]] = field(default_factory=list)  # (id, name) selected
    sock: socket.socket | None = None  # the TLS socket when STARTTLS was negotiated


class _InvalidOptionError(Exception):
    """A malformed option payload: answered with NBD_REP_ERR_INVALID."""


def transmission_flags(export: Export, structured: bool) -> int:
    flags = p.TFLAG_HAS_FLAGS | p.TFLAG_SEND_FLUSH | p.TFLAG_CAN_MULTI_CONN
    if export.read_only:
        flags |= p.TFLAG_READ_ONLY
    else:
        flags |= p.TFLAG_SEND_FUA | p.TFLAG_SEND_TRIM | p.TFLAG_SEND_WRITE_ZEROES
    if structured:
        flags |= p.TFLAG_SEND_DF
    return flags


class _Payload:
    """Cursor over an option payload; running past the end is _InvalidOptionError."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _InvalidOptionError("option payload too short")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u16(self) -> int:
        return int(p.U16.unpack(self.take(2))[0])

    def u32(self) -> int:
        return int(p.U32.unpack(self.take(4))[0])

    def string(self, length: int) -> str:
        if length > p.MAX_STRING:
            raise _InvalidOptionError("string longer than 4096 bytes")
        try:
            return self.take(length).decode()
        except UnicodeDecodeError as exc:
            raise _InvalidOptionError("string is not UTF-8") from exc

    def end(self) -> None:
        if self.pos != len(self.data):
            raise _InvalidOptionError("trailing bytes in option payload")


def _match_contexts(query: str, available: Sequence[str], listing: bool) -> list[str]:
    if query in available:
        return [query]
    if listing and query.endswith(":"):  # "base:" lists a whole namespace
        return [name for name in available if name.startswith(query)]
    return []


class _Haggler:
    def __init__(
        self,
        sock: socket.socket,
        lookup: Callable[[str], Export | None],
        names: Callable[[], list[str]],
        tls: ServerTLS | None = None,
    ) -> None:
        self.sock = sock
        self.lookup = lookup
        self.names = names
        self.tls = tls
        self.tls_done = False
        self.no_zeroes = False
        self.structured = False
        self.meta_export: str | None = None
        self.meta: list[tuple[int, str]] = []

    def reply(self, option: int, rtype: int, data: bytes = b"") -> None:
        self.sock.sendall(p.OPTION_REPLY.pack(p.OPT_REPLY_MAGIC, option, rtype, len(data)) + data)

    def error(self, option: int, rtype: int, message: str) -> None:
        self.reply(option, rtype, message.encode()[: p.MAX_STRING])

    def run(self) -> Negotiated | None:
        self.sock.sendall(
            p.HANDSHAKE.pack(p.NBDMAGIC, p.IHAVEOPT, p.FLAG_FIXED_NEWSTYLE | p.FLAG_NO_ZEROES)
        )
        client_flags = p.CLIENT_FLAGS.unpack(p.recv_exact(self.sock, 4))[0]
        if client_flags & ~(p.FLAG_C_FIXED_NEWSTYLE | p.FLAG_C_NO_ZEROES):
            raise NBDError(f"client sent unknown flags {client_flags:#x}")
        self.no_zeroes = bool(client_flags & p.FLAG_C_NO_ZEROES)
        while True:
            magic, option, length = p.OPTION.unpack(p.recv_exact(self.sock, p.OPTION.size))
            if magic != p.IHAVEOPT:
                raise NBDError(f"bad option magic {magic:#x}")
            if length > _MAX_OPTION:
                p.discard(self.sock, length)
                self.error(option, p.REP_ERR_TOO_BIG, "option payload too long")
                continue
            payload = _Payload(p.recv_exact(self.sock, length))
            try:
                done, result = self.option(option, payload)
            except _InvalidOptionError as exc:
                self.error(option, p.REP_ERR_INVALID, str(exc))
                continue
            if done:
                return result

    def option(self, option: int, payload: _Payload) -> tuple[bool, Negotiated | None]:
        if option == p.OPT_ABORT:
            with contextlib.suppress(OSError):  # the client may hang up without waiting
                self.reply(option, p.REP_ACK)
            return True, None
        if option == p.OPT_STARTTLS and self.tls is not None:
            self.starttls(payload)
            return False, None
        if self.tls is not None and not self.tls_done:
            if option == p.OPT_EXPORT_NAME:
                raise NBDError("client chose an export before STARTTLS")
            self.error(option, p.REP_ERR_TLS_REQD, "this server requires TLS (STARTTLS)")
            return False, None
        if option == p.OPT_EXPORT_NAME:
            return True, self.export_name(payload)
        if option in (p.OPT_INFO, p.OPT_GO):
            result = self.info(option, payload)
            return option == p.OPT_GO and result is not None, result
        if option == p.OPT_LIST:
            payload.end()
            for name in self.names():
                self.reply(option, p.REP_SERVER, p.pack_string(name))
            self.reply(option, p.REP_ACK)
        elif option == p.OPT_STRUCTURED_REPLY:
            payload.end()
            self.structured = True
            self.reply(option, p.REP_ACK)
        elif option in (p.OPT_LIST_META_CONTEXT, p.OPT_SET_META_CONTEXT):
            self.meta_context(option, payload)
        else:
            self.error(option, p.REP_ERR_UNSUP, f"option {option} is not supported")
        return False, None

    def starttls(self, payload: _Payload) -> None:
        assert self.tls is not None
        payload.end()
        if self.tls_done:
            self.error(p.OPT_STARTTLS, p.REP_ERR_INVALID, "TLS is already negotiated")
            return
        self.reply(p.OPT_STARTTLS, p.REP_ACK)
        # The handshake happens here; its failure (OSError or NBDError) ends the connection.
        self.sock = self.tls.wrap_socket(self.sock, server_side=True)
        self.tls_done = True

    def selected(self, name: str, export: Export) -> Negotiated:
        # Contexts only count if they were set for the export finally chosen.
        contexts = self.meta if self.meta_export == name else []
        sock = self.sock if self.tls_done else None
        return Negotiated(name, export, self.structured, contexts, sock)

    def export_name(self, payload: _Payload) -> Negotiated | None:
        name = payload.string(len(payload.data))
        export = self.lookup(name)
        if export is None:
            return None  # this option cannot carry an error: the spec says hang up
        flags = transmission_flags(export, self.structured)
        reply = p.EXPORT_NAME_REPLY.pack(export.size, flags)
        self.sock.sendall(reply if self.no_zeroes else reply + bytes(124))
        return self.selected(name, export)

    def info(self, option: int, payload: _Payload) -> Negotiated | None:
        name = payload.string(payload.u32())
        requests = [payload.u16() for _ in range(payload.u16())]
        payload.end()
        export = self.lookup(name)
        if export is None:
            self.error(option, p.REP_ERR_UNKNOWN, f"export {name!r} not found")
            return None
        flags = transmission_flags(export, self.structured)
        self.reply(option, p.REP_INFO, p.INFO_EXPORT_BODY.pack(p.INFO_EXPORT, export.size, flags))
        if p.INFO_BLOCK_SIZE in requests:
            bs = _SERVER_BLOCK_SIZE
            body = p.INFO_BLOCK_SIZE_BODY.pack(
                p.INFO_BLOCK_SIZE, bs.minimum, bs.preferred, bs.maximum
            )
            self.reply(option, p.REP_INFO, body)
        if p.INFO_NAME in requests:
            self.reply(option, p.REP_INFO, p.U16.pack(p.INFO_NAME) + name.encode())
        self.reply(option, p.REP_ACK)
        return self.selected(name, export)

    def meta_context(self, option: int, payload: _Payload) -> None:
        setting = option == p.OPT_SET_META_CONTEXT
        if setting:
            self.meta_export, self.meta = None, []  # replaced even when the option fails
        name = payload.string(payload.u32())
        queries = [payload.string(payload.u32()) for _ in range(payload.u32())]
        payload.end()
        if not self.structured:
            self.error(option, p.REP_ERR_INVALID, "negotiate structured replies first")
            return
        export = self.lookup(name)
        if export is None:
            self.error(option, p.REP_ERR_UNKNOWN, f"export {name!r} not found")
            return
        available = list(export.meta_contexts())
        if not queries and not setting:
            matched = available
        else:
            matched = [c for q in queries for c in _match_contexts(q, available, not setting)]
        chosen = list(dict.fromkeys(matched))  # de-duplicate, keep order
        for index, context in enumerate(chosen, start=1):
            context_id = index if setting else 0  # list replies carry no id
            self.reply(option, p.REP_META_CONTEXT, p.U32.pack(context_id) + context.encode())
        if setting:
            self.meta_export, self.meta = name, list(enumerate(chosen, start=1))
        self.reply(option, p.REP_ACK)


def negotiate(
    sock: socket.socket,
    lookup: Callable[[str], Export | None],
    names: Callable[[], list[str]],
    tls: ServerTLS | None = None,
) -> Negotiated | None:
    """Run option haggling; None when the client aborted or chose no (existing) export.

    With ``tls`` the client must STARTTLS first; the session then carries the TLS socket.
    """
    return _Haggler(sock, lookup, names, tls).run()
