"""Client side of connecting and of the fixed newstyle handshake, up to transmission."""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import field
from typing import Final

from strongroom.errors import NBDError
from strongroom.image.nbd import protocol as p
from strongroom.records import dataclass

__all__ = [
    "Address",
    "ExportInfo",
    "connect_socket",
    "describe_address",
    "handshake",
    "list_exports",
    "list_exports_at",
]

_MAX_OPTION_REPLY: Final = 1 << 20  # no legitimate option reply comes near this


Address = str | os.PathLike[str] | tuple[str, int]  # unix socket path, or (host, port) for TCP


def describe_address(address: Address) -> str:
    if isinstance(address, tuple):
        return f"tcp {address[0]}:{address[1]}"
    return f"unix socket {os.fspath(address)}"


def connect_socket(address: Address, timeout: float | None = 10.0) -> socket.socket:
    """Open a connected stream socket; failures become NBDError naming the address."""
    try:
        if isinstance(address, tuple):
            sock = socket.create_connection(address, timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small requests
            return sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(os.fspath(address))
        except OSError:
            sock.close()
            raise
        return sock
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise NBDError(
            f"cannot connect to NBD server at {describe_address(address)}: {reason}"
        ) from exc


@dataclass(frozen=True, slots=True)
class ExportInfo:
    """What the handshake learned about the export chosen for transmission."""

    name: str
    size: int
    flags: int
    block_size: p.BlockSize
    structured: bool
    contexts: dict[str, int] = field(default_factory=dict)  # meta context name -> id


class _Options:
    """Sends options and reads their replies, turning error replies into NBDError."""

    def __init__(self, sock: socket.socket, export: str) -> None:
        self.sock = sock
        self.export = export

    def send(self, option: int, payload: bytes = b"") -> None:
        self.sock.sendall(p.OPTION.pack(p.IHAVEOPT, option, len(payload)) + payload)

    def reply(self, option: int) -> tuple[int, bytes]:
        magic, opt, rtype, length = p.OPTION_REPLY.unpack(
            p.recv_exact(self.sock, p.OPTION_REPLY.size)
        )
        if magic != p.OPT_REPLY_MAGIC or opt != option:
            raise NBDError(f"bad option reply (magic {magic:#x}, option {opt}, want {option})")
        if length > _MAX_OPTION_REPLY:
            raise NBDError(f"option reply of {length} bytes is too long")
        return rtype, p.recv_exact(self.sock, length)

    def error(self, what: str, rtype: int, payload: bytes) -> NBDError:
        reason = p.REP_ERROR_NAMES.get(rtype, f"error reply {rtype:#x}")
        message = payload.decode(errors="replace").strip()
        detail = f"{reason}: {message}" if message else reason
        return NBDError(f"NBD server refused {what} for export {self.export!r}: {detail}")


def _greet(sock: socket.socket) -> bool:
    """Read the server greeting and answer with our client flags; True if NO_ZEROES is on."""
    magic, second, flags = p.HANDSHAKE.unpack(p.recv_exact(sock, p.HANDSHAKE.size))
    if magic != p.NBDMAGIC:
        raise NBDError(f"not an NBD server (greeting magic {magic:#x})")
    if second == p.CLISERV_MAGIC:
        raise NBDError("NBD server uses oldstyle negotiation, which is not supported")
    if second != p.IHAVEOPT or not flags & p.FLAG_FIXED_NEWSTYLE:
        raise NBDError("NBD server does not support fixed newstyle negotiation")
    client_flags = p.FLAG_C_FIXED_NEWSTYLE
    if flags & p.FLAG_NO_ZEROES:
        client_flags |= p.FLAG_C_NO_ZEROES
    sock.sendall(p.CLIENT_FLAGS.pack(client_flags))
    return bool(client_flags & p.FLAG_C_NO_ZEROES)


def _structured_reply(opts: _Options) -> bool:
    opts.send(p.OPT_STRUCTURED_REPLY)
    rtype, _ = opts.reply(p.OPT_STRUCTURED_REPLY)
    if rtype == p.REP_ACK:
        return True
    if rtype & p.REP_FLAG_ERROR:
        return False  # old servers: fall back to simple replies
    raise NBDError(f"unexpected reply {rtype} to NBD_OPT_STRUCTURED_REPLY")


def _set_meta_contexts(opts: _Options, queries: tuple[str, ...]) -> dict[str, int]:
    payload = p.pack_string(opts.export) + p.U32.pack(len(queries))
    payload += b"".join(p.pack_string(q) for q in queries)
    opts.send(p.OPT_SET_META_CONTEXT, payload)
    selected: dict[str, int] = {}
    while True:
        rtype, data = opts.reply(p.OPT_SET_META_CONTEXT)
        if rtype == p.REP_ACK:
            break
        if rtype & p.REP_FLAG_ERROR:
            raise opts.error("meta contexts " + ", ".join(queries), rtype, data)
        if rtype != p.REP_META_CONTEXT or len(data) < 4:
            raise NBDError(f"unexpected reply {rtype} to NBD_OPT_SET_META_CONTEXT")
        selected[data[4:].decode(errors="replace")] = p.U32.unpack_from(data)[0]
    missing = [q for q in queries if q not in selected]
    if missing:
        raise NBDError(
            f"NBD server does not offer meta context {', '.join(missing)} "
            f"for export {opts.export!r}"
        )
    return selected


@dataclass(slots=True)
class _GoInfo:
    size: int | None = None
    flags: int = 0
    block_size: p.BlockSize = field(default_factory=p.BlockSize)

    def parse(self, data: bytes) -> None:
        if len(data) < 2:
            raise NBDError("truncated NBD_REP_INFO")
        kind = p.U16.unpack_from(data)[0]
        if kind == p.INFO_EXPORT and len(data) == p.INFO_EXPORT_BODY.size:
            _, self.size, self.flags = p.INFO_EXPORT_BODY.unpack(data)
        elif kind == p.INFO_BLOCK_SIZE and len(data) == p.INFO_BLOCK_SIZE_BODY.size:
            _, minimum, preferred, maximum = p.INFO_BLOCK_SIZE_BODY.unpack(data)
            self.block_size = p.BlockSize(minimum, preferred, maximum)
        # other information types are optional and ignored, as the spec requires


def _go(opts: _Options) -> tuple[int, int, p.BlockSize] | None:
    """NBD_OPT_GO; None when the server does not know the option (caller falls back)."""
    requests = (p.INFO_BLOCK_SIZE,)
    payload = p.pack_string(opts.export) + p.U16.pack(len(requests))
    payload += b"".join(p.U16.pack(r) for r in requests)
    opts.send(p.OPT_GO, payload)
    info = _GoInfo()
    while True:
        rtype, data = opts.reply(p.OPT_GO)
        if rtype == p.REP_INFO:
            info.parse(data)
        elif rtype == p.REP_ACK:
            break
        elif rtype == p.REP_ERR_UNSUP:
            return None
        elif rtype & p.REP_FLAG_ERROR:
            raise opts.error("NBD_OPT_GO", rtype, data)
        else:
            raise NBDError(f"unexpected reply {rtype} to NBD_OPT_GO")
    if info.size is None:
        raise NBDError("NBD server accepted NBD_OPT_GO without NBD_INFO_EXPORT")
    return info.size, info.flags, info.block_size


def _export_name(opts: _Options, no_zeroes: bool) -> tuple[int, int, p.BlockSize]:
    """Legacy NBD_OPT_EXPORT_NAME: the server just hangs up on an unknown export."""
    opts.send(p.OPT_EXPORT_NAME, opts.export.encode())
    try:
        size, flags = p.EXPORT_NAME_REPLY.unpack(p.recv_exact(opts.sock, p.EXPORT_NAME_REPLY.size))
        if not no_zeroes:
            p.discard(opts.sock, 124)
    except NBDError as exc:
        raise NBDError(f"NBD server closed the connection: no export {opts.export!r}") from exc
    return size, flags, p.BlockSize()


def handshake(
    sock: socket.socket, export: str, contexts: tuple[str, ...], structured: bool = True
) -> ExportInfo:
    """Negotiate structured replies, the wanted meta contexts and the export; enter transmission.

    Meta contexts need structured replies, so asking for them from a server without structured
    reply support is an error rather than a silent loss of block status.  ``structured=False``
    keeps to simple replies (mainly to test that path).
    """
    no_zeroes = _greet(sock)
    opts = _Options(sock, export)
    try:
        structured = structured and _structured_reply(opts)
        selected: dict[str, int] = {}
        if contexts:
            if not structured:
                raise NBDError("NBD server lacks structured replies: no block status possible")
            selected = _set_meta_contexts(opts, contexts)
        result = _go(opts)
    except NBDError:
        with contextlib.suppress(OSError):
            opts.send(p.OPT_ABORT)  # soft disconnect, as the spec asks of clients
        raise
    if result is None:
        result = _export_name(opts, no_zeroes)
    size, flags, block_size = result
    return ExportInfo(export, size, flags, block_size, structured, selected)


def list_exports(sock: socket.socket) -> list[tuple[str, str]]:
    """NBD_OPT_LIST: (name, description) of every export, then a soft disconnect."""
    _greet(sock)
    opts = _Options(sock, "")
    opts.send(p.OPT_LIST)
    exports: list[tuple[str, str]] = []
    while True:
        rtype, data = opts.reply(p.OPT_LIST)
        if rtype == p.REP_ACK:
            break
        if rtype & p.REP_FLAG_ERROR:
            raise opts.error("NBD_OPT_LIST", rtype, data)
        if rtype == p.REP_SERVER and len(data) >= 4:
            n = p.U32.unpack_from(data)[0]
            name, rest = data[4 : 4 + n], data[4 + n :]
            exports.append((name.decode(errors="replace"), rest.decode(errors="replace")))
    opts.send(p.OPT_ABORT)
    return exports


def list_exports_at(address: Address, timeout: float = 10.0) -> list[tuple[str, str]]:
    """(name, description) of every export the server at ``address`` lists."""
    with connect_socket(address, timeout) as sock:
        try:
            return list_exports(sock)
        except OSError as exc:
            raise NBDError(f"NBD handshake with {describe_address(address)} failed: {exc}") from exc
