"""NBD wire constants, struct layouts and socket helpers shared by the client and the server.

Written from the NBD protocol specification (``doc/proto.md`` of the NetworkBlockDevice
project).  Only fixed newstyle negotiation with compact (non-extended) headers is spoken; every
integer on the wire is big-endian.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
from collections.abc import Iterator
from typing import Any, Final

from strongroom.errors import NBDError
from strongroom.records import dataclass

# --- handshake -----------------------------------------------------------------------------

NBDMAGIC: Final = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT: Final = 0x49484156454F5054  # "IHAVEOPT"
CLISERV_MAGIC: Final = 0x00420281861253  # oldstyle negotiation, not supported
OPT_REPLY_MAGIC: Final = 0x3E889045565A9

FLAG_FIXED_NEWSTYLE: Final = 1 << 0
FLAG_NO_ZEROES: Final = 1 << 1
FLAG_C_FIXED_NEWSTYLE: Final = 1 << 0
FLAG_C_NO_ZEROES: Final = 1 << 1

OPT_EXPORT_NAME: Final = 1
OPT_ABORT: Final = 2
OPT_LIST: Final = 3
OPT_STARTTLS: Final = 5
OPT_INFO: Final = 6
OPT_GO: Final = 7
OPT_STRUCTURED_REPLY: Final = 8
OPT_LIST_META_CONTEXT: Final = 9
OPT_SET_META_CONTEXT: Final = 10

REP_ACK: Final = 1
REP_SERVER: Final = 2
REP_INFO: Final = 3
REP_META_CONTEXT: Final = 4
REP_FLAG_ERROR: Final = 1 << 31
REP_ERR_UNSUP: Final = REP_FLAG_ERROR | 1
REP_ERR_POLICY: Final = REP_FLAG_ERROR | 2
REP_ERR_INVALID: Final = REP_FLAG_ERROR | 3
REP_ERR_PLATFORM: Final = REP_FLAG_ERROR | 4
REP_ERR_TLS_REQD: Final = REP_FLAG_ERROR | 5
REP_ERR_UNKNOWN: Final = REP_FLAG_ERROR | 6
REP_ERR_SHUTDOWN: Final = REP_FLAG_ERROR | 7
REP_ERR_BLOCK_SIZE_REQD: Final = REP_FLAG_ERROR | 8
REP_ERR_TOO_BIG: Final = REP_FLAG_ERROR | 9

REP_ERROR_NAMES: Final = {
    REP_ERR_UNSUP: "option not supported",
    REP_ERR_POLICY: "forbidden by server policy",
    REP_ERR_INVALID: "invalid option",
    REP_ERR_PLATFORM: "not supported on the server's platform",
    REP_ERR_TLS_REQD: "TLS required",
    REP_ERR_UNKNOWN: "export not available",
    REP_ERR_SHUTDOWN: "server shutting down",
    REP_ERR_BLOCK_SIZE_REQD: "block size negotiation required",
    REP_ERR_TOO_BIG: "request too big",
}

INFO_EXPORT: Final = 0
INFO_NAME: Final = 1
INFO_DESCRIPTION: Final = 2
INFO_BLOCK_SIZE: Final = 3

# --- transmission flags --------------------------------------------------------------------

TFLAG_HAS_FLAGS: Final = 1 << 0
TFLAG_READ_ONLY: Final = 1 << 1
TFLAG_SEND_FLUSH: Final = 1 << 2
TFLAG_SEND_FUA: Final = 1 << 3
TFLAG_ROTATIONAL: Final = 1 << 4
TFLAG_SEND_TRIM: Final = 1 << 5
TFLAG_SEND_WRITE_ZEROES: Final = 1 << 6
TFLAG_SEND_DF: Final = 1 << 7
TFLAG_CAN_MULTI_CONN: Final = 1 << 8
TFLAG_SEND_RESIZE: Final = 1 << 9
TFLAG_SEND_CACHE: Final = 1 << 10
TFLAG_SEND_FAST_ZERO: Final = 1 << 11

# --- requests and replies ------------------------------------------------------------------

REQUEST_MAGIC: Final = 0x25609513
SIMPLE_REPLY_MAGIC: Final = 0x67446698
STRUCTURED_REPLY_MAGIC: Final = 0x668E33EF

CMD_READ: Final = 0
CMD_WRITE: Final = 1
CMD_DISC: Final = 2
CMD_FLUSH: Final = 3
CMD_TRIM: Final = 4
CMD_CACHE: Final = 5
CMD_WRITE_ZEROES: Final = 6
CMD_BLOCK_STATUS: Final = 7

CMD_NAMES: Final = {
    CMD_READ: "READ",
    CMD_WRITE: "WRITE",
    CMD_DISC: "DISC",
    CMD_FLUSH: "FLUSH",
    CMD_TRIM: "TRIM",
    CMD_CACHE: "CACHE",
    CMD_WRITE_ZEROES: "WRITE_ZEROES",
    CMD_BLOCK_STATUS: "BLOCK_STATUS",
}

CMD_FLAG_FUA: Final = 1 << 0
CMD_FLAG_NO_HOLE: Final = 1 << 1
CMD_FLAG_DF: Final = 1 << 2
CMD_FLAG_REQ_ONE: Final = 1 << 3
CMD_FLAG_FAST_ZERO: Final = 1 << 4

REPLY_FLAG_DONE: Final = 1 << 0
REPLY_TYPE_NONE: Final = 0
REPLY_TYPE_OFFSET_DATA: Final = 1
REPLY_TYPE_OFFSET_HOLE: Final = 2
REPLY_TYPE_BLOCK_STATUS: Final = 5
REPLY_TYPE_ERROR_BIT: Final = 1 << 15
REPLY_TYPE_ERROR: Final = REPLY_TYPE_ERROR_BIT | 1
REPLY_TYPE_ERROR_OFFSET: Final = REPLY_TYPE_ERROR_BIT | 2

# base:allocation extent flags
STATE_HOLE: Final = 1 << 0
STATE_ZERO: Final = 1 << 1
# qemu:dirty-bitmap:NAME extent flag
STATE_DIRTY: Final = 1 << 0

BASE_ALLOCATION: Final = "base:allocation"

# Error values allowed on the wire; the spec fixes them to the common Linux errno numbers.
EPERM: Final = 1
EIO: Final = 5
ENOMEM: Final = 12
EINVAL: Final = 22
ENOSPC: Final = 28
EOVERFLOW: Final = 75
ENOTSUP: Final = 95
ESHUTDOWN: Final = 108
WIRE_ERRORS: Final = {
    EPERM: "EPERM",
    EIO: "EIO",
    ENOMEM: "ENOMEM",
    EINVAL: "EINVAL",
    ENOSPC: "ENOSPC",
    EOVERFLOW: "EOVERFLOW",
    ENOTSUP: "ENOTSUP",
    ESHUTDOWN: "ESHUTDOWN",
}

DEFAULT_MAX_BLOCK: Final = 32 * 1024 * 1024  # the spec's default maximum payload size
MAX_STRING: Final = 4096  # longest string (name, query, message) the spec allows

# --- struct layouts ------------------------------------------------------------------------

HANDSHAKE: Final = struct.Struct(">QQH")  # NBDMAGIC, IHAVEOPT, handshake flags
CLIENT_FLAGS: Final = struct.Struct(">I")
OPTION: Final = struct.Struct(">QII")  # IHAVEOPT, option, length
OPTION_REPLY: Final = struct.Struct(">QIII")  # magic, option, reply type, length
EXPORT_NAME_REPLY: Final = struct.Struct(">QH")  # size, transmission flags
INFO_EXPORT_BODY: Final = struct.Struct(">HQH")  # info type, size, transmission flags
INFO_BLOCK_SIZE_BODY: Final = struct.Struct(">HIII")  # info type, minimum, preferred, maximum
REQUEST: Final = struct.Struct(">IHHQQI")  # magic, flags, type, cookie, offset, length
SIMPLE_REPLY: Final = struct.Struct(">IIQ")  # magic, error, cookie
STRUCTURED_REPLY: Final = struct.Struct(">IHHQI")  # magic, flags, type, cookie, length
U16: Final = struct.Struct(">H")
U32: Final = struct.Struct(">I")
U64: Final = struct.Struct(">Q")
HOLE_CHUNK: Final = struct.Struct(">QI")  # offset, hole size
ERROR_CHUNK: Final = struct.Struct(">IH")  # error, message length
EXTENT: Final = struct.Struct(">II")  # length, flags


class NBDCommandError(NBDError):
    """The server failed one command (an error reply); the connection stays usable.

    ``error`` is the NBD error value (``protocol.EIO`` ...), ``command`` the command name.
    """

    def __init__(self, message: str, *, error: int, command: str) -> None:
        super().__init__(message)
        self.error = error
        self.command = command


@dataclass(frozen=True, slots=True)
class Extent:
    """A run of bytes sharing one status in a metadata context (offsets are absolute)."""

    offset: int
    length: int
    flags: int

    @property
    def end(self) -> int:
        return self.offset + self.length


Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class BlockSize:
    """Block size constraints advertised by the server (NBD_INFO_BLOCK_SIZE)."""

    minimum: int = 1
    preferred: int = 4096
    maximum: int = DEFAULT_MAX_BLOCK


def wire_error_name(code: int) -> str:
    """Readable name of an NBD error value (``EIO``), falling back to the errno table."""
    if code in WIRE_ERRORS:
        return WIRE_ERRORS[code]
    return errno.errorcode.get(code, f"error {code}")


def errno_to_wire(code: int | None) -> int:
    """Map a local errno to one of the error values the spec allows on the wire."""
    if code in WIRE_ERRORS:
        return code
    if code in (errno.EDQUOT, errno.EFBIG):
        return ENOSPC  # the spec asks servers to fold quota and file-size errors into ENOSPC
    if code in (errno.EROFS, errno.EACCES):
        return EPERM
    if code == errno.EOPNOTSUPP:
        return ENOTSUP
    return EIO


def recv_into(sock: socket.socket, view: memoryview) -> None:
    """Fill ``view`` completely from ``sock``; EOF before that is an :class:`NBDError`."""
    pos, size = 0, len(view)
    while pos < size:
        n = sock.recv_into(view[pos:], size - pos)
        if n == 0:
            raise NBDError(f"connection closed by peer ({size - pos} of {size} bytes missing)")
        pos += n


def recv_exact(sock: socket.socket, size: int) -> bytes:
    """Read exactly ``size`` bytes (small protocol fields; bulk data goes through recv_into)."""
    buf = bytearray(size)
    recv_into(sock, memoryview(buf))
    return bytes(buf)


def discard(sock: socket.socket, size: int) -> None:
    """Read and drop ``size`` bytes, used to skip payloads we do not want."""
    scratch = memoryview(bytearray(min(size, 65536) or 1))
    while size > 0:
        step = min(size, len(scratch))
        recv_into(sock, scratch[:step])
        size -= step


def pack_string(text: str) -> bytes:
    """A 32-bit length followed by the UTF-8 bytes, as used by the option payloads."""
    raw = text.encode()
    return U32.pack(len(raw)) + raw


def send_parts(sock: socket.socket, parts: list[Buffer]) -> None:
    """Send buffers with ``sendmsg`` (header + payload without concatenating them)."""
    # TLS has no sendmsg: one record per buffer.  ssl (4 ms to import) is looked up, not
    # imported: a socket can only be an SSLSocket once something has loaded it.
    tls = sys.modules.get("ssl")
    if tls is not None and isinstance(sock, tls.SSLSocket):
        for part in parts:
            sock.sendall(part)
        return
    for first in range(0, len(parts), 512):  # stay well under IOV_MAX
        batch = parts[first : first + 512]
        sent = sock.sendmsg(batch)
        for part in batch:  # a partial send is rare (signals, huge payloads): finish it here
            size = len(part)
            if sent >= size:
                sent -= size
                continue
            sock.sendall(memoryview(part)[sent:])
            sent = 0


def spans(offset: int, length: int, step: int) -> Iterator[tuple[int, int]]:
    """Split ``[offset, offset + length)`` into pieces of at most ``step`` bytes."""
    end = offset + length
    while offset < end:
        n = min(step, end - offset)
        yield offset, n
        offset += n


def byte_view(buf: Any, writable: bool) -> memoryview:
    """A flat byte view of any buffer (bytearray, memoryview, numpy array, mmap...)."""
    view = memoryview(buf)
    if writable and view.readonly:
        raise NBDError("read buffer must be writable (bytearray, memoryview, numpy array...)")
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")
