"""TLS-PSK for ``strongroom serve --listen --tls-psk FILE``, on every supported Python.

The stdlib ``ssl`` has PSK only from Python 3.13, so PSK goes through pyOpenSSL on all
versions (one code path): the server callback is set with OpenSSL's
``SSL_CTX_set_psk_server_callback`` through the cffi binding pyOpenSSL itself uses.  That
callback serves TLS 1.3 (the key used with a SHA-256 suite, which GnuTLS clients such as qemu
and libnbd offer) and TLS 1.2's PSK cipher suites alike.

The keys file is the one of qemu's ``tls-creds-psk`` (``keys.psk``), nbdkit and libnbd, as
GnuTLS's ``psktool`` writes it: one ``username:hexkey`` a line.
"""

from __future__ import annotations

import functools
import logging
import re
import select
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, TypeVar

from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi  # the binding pyOpenSSL's own callbacks use
from OpenSSL._util import lib as _lib

from strongroom.errors import ImageError, NBDError

__all__ = ["PSKContext", "PSKSocket", "load_psk_file", "parse_psk_keys"]

_USERNAME: Final = re.compile(r"[^:\s]+")
_HEXKEY: Final = re.compile(r"(?:[0-9a-fA-F]{2})+")
_MAX_KEY: Final = 256  # bytes; OpenSSL 3 takes up to 512, OpenSSL 1.1 up to 256
_CALLBACK: Final = "unsigned int(*)(SSL *, char *, unsigned char *, unsigned int)"
# TLS 1.2: PSK suites only (the server has no certificate), forward secret ones first.
_TLS12_CIPHERS: Final = b"ECDHEPSK:DHEPSK:PSK:!RSAPSK:!aNULL:!eNULL:!3DES:!RC4:@STRENGTH"

_T = TypeVar("_T")

log = logging.getLogger(__name__)


def parse_psk_keys(text: str) -> dict[str, bytes]:
    """``username:hexkey`` lines -> {username: key}; blank lines are skipped.

    Anything else (no colon, a bad username, odd or non-hex digits, a key repeated for one
    username) is a ValueError naming the line.
    """
    keys: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        user, sep, hexkey = line.partition(":")
        if not sep or not _USERNAME.fullmatch(user):
            raise ValueError(f"line {number} is not username:hexkey")
        if not _HEXKEY.fullmatch(hexkey):
            raise ValueError(f"line {number}: the key is not an even number of hex digits")
        if len(hexkey) // 2 > _MAX_KEY:
            raise ValueError(f"line {number}: the key is longer than {_MAX_KEY} bytes")
        if user in keys:
            raise ValueError(f"line {number}: username {user!r} is given twice")
        keys[user] = bytes.fromhex(hexkey)
    if not keys:
        raise ValueError("no username:hexkey line")
    return keys


def load_psk_file(path: Path) -> dict[str, bytes]:
    """The keys of ``path``; an unreadable or malformed file is an ImageError (one line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ImageError(f"cannot read the PSK file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ImageError(f"PSK file {path}: not UTF-8 text") from None
    try:
        return parse_psk_keys(text)
    except ValueError as exc:
        raise ImageError(f"PSK file {path}: {exc}") from None


class PSKContext:
    """Server TLS with pre-shared keys; ``wrap_socket`` is what the NBD server calls."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        if not getattr(_lib, "Cryptography_HAS_PSK", 0):
            raise ImageError("this OpenSSL binding has no TLS-PSK: use --tls-cert/--tls-key")
        self._keys = dict(keys)
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_cipher_list(_TLS12_CIPHERS)
        # Kept referenced: OpenSSL holds only the C pointer.
        self._callback = _ffi.callback(_CALLBACK, self._find_key, error=0)
        _lib.SSL_CTX_set_psk_server_callback(ctx._context, self._callback)
        self._ctx = ctx

    def _find_key(self, _ssl: Any, identity: Any, out: Any, max_len: int) -> int:
        """OpenSSL's PSK lookup: the key's length, 0 to refuse (unknown user)."""
        if identity == _ffi.NULL:
            return 0
        user = _ffi.string(identity).decode("utf-8", "replace")
        key = self._keys.get(user)
        if key is None or len(key) > max_len:
            # Refused: TLS 1.3 then falls back to certificates, which the server has none of.
            log.info("TLS-PSK: refusing unknown username %r", user)
            return 0
        _ffi.memmove(out, key, len(key))
        return len(key)

    def wrap_socket(self, sock: socket.socket, server_side: bool = False) -> PSKSocket:
        """Take over ``sock`` (as ``ssl.SSLContext.wrap_socket`` does) and run the handshake."""
        if not server_side:
            raise NBDError("PSKContext serves the server side only")
        return PSKSocket(self._ctx, sock)


class PSKSocket(socket.socket):
    """A TCP socket speaking TLS through pyOpenSSL, with the calls the NBD server makes.

    Like ``ssl.SSLSocket`` it takes over the plain socket's descriptor and timeout.  A socket
    with a timeout is non-blocking underneath: OpenSSL's want-read/want-write are waited
    for here, up to the timeout.
    """

    def __init__(self, ctx: SSL.Context, sock: socket.socket) -> None:
        timeout = sock.gettimeout()
        super().__init__(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self.settimeout(timeout)
        self._conn = SSL.Connection(ctx, self)
        self._conn.set_accept_state()
        try:
            self._retry(self._conn.do_handshake)
        except BaseException:
            self.close()
            raise

    def _wait(self, events: int) -> None:
        poller = select.poll()
        poller.register(self.fileno(), events)
        timeout = self.gettimeout()
        if not poller.poll(None if timeout is None else timeout * 1000):
            raise TimeoutError("TLS: timed out")

    def _retry(self, op: Callable[[], _T]) -> _T:
        """Run ``op`` until OpenSSL stops asking to wait; its errors become NBDError/OSError."""
        while True:
            try:
                return op()
            except SSL.WantReadError:
                self._wait(select.POLLIN)
            except SSL.WantWriteError:
                self._wait(select.POLLOUT)
            except SSL.ZeroReturnError:
                raise  # close_notify: recv_into reports the end of stream
            except SSL.SysCallError as exc:
                code, message = exc.args
                if code == -1:  # the peer hung up without close_notify
                    raise ConnectionResetError("TLS: connection closed by peer") from None
                raise OSError(code, f"TLS: {message}") from None
            except SSL.Error as exc:
                raise NBDError(f"TLS: {_reason(exc)}") from None

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        try:
            return self._retry(lambda: self._conn.recv_into(buffer, nbytes or None))
        except (SSL.ZeroReturnError, ConnectionResetError):
            return 0  # end of stream, as a plain socket reports it

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        buf = bytearray(bufsize)
        return bytes(buf[: self.recv_into(buf)])

    def send(self, data: Any, flags: int = 0) -> int:
        return self._retry(lambda: self._conn.send(data))

    def sendall(self, data: Any, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        sent = 0
        while sent < len(view):
            chunk = view[sent : sent + (1 << 30)]  # SSL_write takes an int length
            sent += self._retry(functools.partial(self._conn.send, chunk))

    def sendmsg(self, buffers: Iterable[Any], *_args: Any) -> int:
        """Each buffer in turn (TLS has no scatter-gather); all or an error."""
        total = 0
        for buf in buffers:
            self.sendall(buf)
            total += memoryview(buf).nbytes
        return total


def _reason(exc: SSL.Error) -> str:
    """The OpenSSL reason of a pyOpenSSL error (its args are [(lib, func, reason), ...])."""
    errors = exc.args[0] if exc.args else None
    if isinstance(errors, list) and errors and isinstance(errors[0], tuple):
        return str(errors[0][-1])
    return str(exc) or type(exc).__name__
