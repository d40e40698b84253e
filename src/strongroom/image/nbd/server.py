"""An NBD server for strongroom exports: a thread per connection, blocking sockets.

Listens on a unix socket and/or a TCP address.  Given a TLS context every client
must negotiate TLS (NBD_OPT_STARTTLS) before anything else; without one, give a loopback
address unless the export is meant for the network (plain NBD has no authentication).
Requests on one connection are served in order; clients wanting parallelism open several
connections (the server advertises NBD_FLAG_CAN_MULTI_CONN, exports being shared and
thread-safe).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Final

from strongroom.errors import NBDError
from strongroom.image.nbd.exports import Export
from strongroom.image.nbd.options import ServerTLS, negotiate
from strongroom.image.nbd.transmission import Transmission

__all__ = ["NBDServer"]

log = logging.getLogger(__name__)

_HANDSHAKE_TIMEOUT: Final = 60.0


class NBDServer:
    """Serves named exports until :meth:`stop`.

    ``socket_path`` is a unix socket to create (a stale socket there is replaced); ``tcp`` is
    a (host, port) to listen on, port 0 picking a free one (see :attr:`tcp_address`).
    """

    def __init__(
        self,
        exports: Mapping[str, Export],
        socket_path: str | os.PathLike[str] | None = None,
        *,
        tcp: tuple[str, int] | None = None,
        tls: ServerTLS | None = None,
    ) -> None:
        if socket_path is None and tcp is None:
            raise NBDError("NBDServer needs a unix socket path or a TCP address")
        self._exports = dict(exports)
        self.socket_path = Path(socket_path) if socket_path is not None else None
        self._tcp_request = tcp
        self._tls = tls
        self.tcp_address: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._listeners: list[socket.socket] = []
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._accept_thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._stopping = False

    # --- exports ---------------------------------------------------------------------------

    def add_export(self, name: str, export: Export) -> None:
        """Make ``export`` available to new connections under ``name``."""
        with self._lock:
            self._exports[name] = export

    def remove_export(self, name: str) -> None:
        """Hide ``name`` from new connections (connected clients keep using it)."""
        with self._lock:
            self._exports.pop(name, None)

    def _lookup(self, name: str) -> Export | None:
        with self._lock:
            return self._exports.get(name)

    def _names(self) -> list[str]:
        with self._lock:
            return sorted(self._exports)

    # --- lifetime --------------------------------------------------------------------------

    def _listen_unix(self, path: Path) -> socket.socket:
        if len(os.fsencode(path)) >= 108:
            raise NBDError(f"unix socket path too long (limit 107 bytes): {path}")
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()  # stale socket from an earlier run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(os.fspath(path))
        return sock

    def _listen_tcp(self, address: tuple[str, int]) -> socket.socket:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        self.tcp_address = sock.getsockname()[:2]
        return sock

    def start(self) -> NBDServer:
        """Bind, listen and start accepting in a background thread."""
        try:
            if self.socket_path is not None:
                self._listeners.append(self._listen_unix(self.socket_path))
            if self._tcp_request is not None:
                self._listeners.append(self._listen_tcp(self._tcp_request))
        except OSError as exc:
            self._close_listeners()
            raise NBDError(f"NBD server cannot listen: {exc}") from exc
        for listener in self._listeners:
            listener.listen(16)
        self._wake_r, self._wake_w = os.pipe()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="nbd-accept")
        self._accept_thread.daemon = True
        self._accept_thread.start()
        return self

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            for listener in self._listeners:
                selector.register(listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r or self._stopping:
                        return
                    assert isinstance(key.fileobj, socket.socket)
                    with contextlib.suppress(OSError):
                        self._spawn(key.fileobj.accept()[0])

    def _spawn(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread = threading.Thread(target=self._serve, args=(conn,), name="nbd-connection")
        thread.daemon = True
        with self._lock:
            self._connections[conn] = thread
        thread.start()

    def _serve(self, conn: socket.socket) -> None:
        """One client: handshake, then requests until DISC or a hard disconnect."""
        try:
            conn.settimeout(_HANDSHAKE_TIMEOUT)  # a silent client must not pin a thread forever
            session = negotiate(conn, self._lookup, self._names, self._tls)
            if session is not None and session.sock is not None:
                conn = self._rebind(conn, session.sock)  # the TLS socket from here on
            conn.settimeout(None)
            if session is not None:
                Transmission(conn, session).run()
        except (OSError, NBDError) as exc:
            if not self._stopping:
                log.info("NBD connection ended: %s", exc)
        finally:
            with self._lock:
                self._connections.pop(conn, None)
            conn.close()

    def _rebind(self, old: socket.socket, new: socket.socket) -> socket.socket:
        """Track ``new`` (which took over ``old``'s descriptor) so :meth:`stop` reaches it."""
        with self._lock:
            thread = self._connections.pop(old, None)
            if thread is not None:
                self._connections[new] = thread
        return new

    def _close_listeners(self) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        if self.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, hard-disconnect every client and wait for their threads."""
        self._stopping = True
        if self._accept_thread is not None:
            os.write(self._wake_w, b"x")
            self._accept_thread.join(timeout)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._accept_thread = None
        self._close_listeners()
        with self._lock:
            connections = list(self._connections.items())
        for conn, _ in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for _, thread in connections:
            thread.join(timeout)

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def __enter__(self) -> NBDServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
