"""Streaming a point's file, or a folder as a zip or tar, to the server in one chunked POST.

Everything is produced incrementally: one content chunk (or 1 MiB of a guest file) at a
time goes into the archive writer, which writes into :class:`Upload`; the upload sends each
256 KiB as one HTTP chunk and blocks while the server (which relays to the browser and keeps
a few chunks at most) is not reading.  Memory stays bounded whatever the folder's size.
"""

from __future__ import annotations

import http.client
import io
import os
import tarfile
import time
import zipfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from strongroom.errors import IntegrityError, StorageError

if TYPE_CHECKING:
    from strongroom.vault import Vault

PIECE = 256 * 1024
_ZEROS = bytes(1 << 20)
_ZIP_EPOCH = 315532800  # 1980-01-01, the first time a zip entry can have


class Upload:
    """A POST whose body is sent as it is written (chunked transfer encoding)."""

    def __init__(self, conn: http.client.HTTPConnection, path: str, headers: dict[str, str]):
        self.conn = conn
        self.buf = bytearray()
        self.sent = 0
        conn.putrequest("POST", path)
        for key, value in {**headers, "Transfer-Encoding": "chunked"}.items():
            conn.putheader(key, value.encode("latin-1", "replace").decode("latin-1"))
        conn.endheaders()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.buf += data
        if len(self.buf) >= PIECE:
            self._send()
        return len(data)

    def flush(self) -> None:
        """(zipfile and tarfile call it; the buffer goes out when it is full or at the end)"""

    def _send(self) -> None:
        try:
            for at in range(0, len(self.buf), PIECE):
                piece = bytes(self.buf[at : at + PIECE])
                self.conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
        except OSError as exc:
            self.conn.close()
            raise StorageError(f"the server stopped taking the transfer: {exc}") from None
        self.sent += len(self.buf)
        self.buf.clear()

    def finish(self) -> None:
        self._send()
        try:
            self.conn.send(b"0\r\n\r\n")
            reply = self.conn.getresponse()
            body = reply.read()
        except (OSError, http.client.HTTPException) as exc:
            raise StorageError(f"the server did not take the transfer: {exc}") from None
        finally:
            self.conn.close()
        if reply.status >= 300:
            raise StorageError(f"the server refused the transfer ({reply.status}): {body[:200]!r}")

    def abort(self) -> None:
        """Break the connection: the server sees an unfinished body and fails the transfer."""
        self.conn.close()


def content(v: Vault, node: Any) -> Iterator[bytes]:
    """A file's bytes in order: content chunks over its data extents, zeros in the holes
    (a files node), or read from the guest filesystem (an image point's node)."""
    if getattr(node, "fs", None) is not None:
        stream = node.fs.open(node.ref[1])
        while data := stream.read(1 << 20):
            yield data
        return
    chunks = (v.read_chunk(c) for c in node.chunks)
    pending, pos = b"", 0
    for offset, length in node.data_extents():
        yield from _zeros(offset - pos)
        need = length
        while need:
            if not pending:
                pending = next(chunks, b"")
                if not pending:
                    raise IntegrityError(f"{node.name!r}: content shorter than its size")
            take, pending = pending[:need], pending[need:]
            need -= len(take)
            yield take
        pos = offset + length
    yield from _zeros(node.size - pos)


def _zeros(n: int) -> Iterator[bytes]:
    while n > 0:
        yield _ZEROS[: min(n, len(_ZEROS))]
        n -= len(_ZEROS)


def send_file(v: Vault, node: Any, up: Upload) -> None:
    from strongroom.files.nodes import FILE

    if node.kind != FILE:
        raise StorageError("only a regular file downloads as itself: ask for a zip or a tar")
    for data in content(v, node):
        up.write(data)


def send_archive(v: Vault, trees: Any, node: Any, where: bytes, fmt: str, up: Upload) -> None:
    """``node`` and everything below it (``trees``: the files engine's or a guest's tree
    reader), names relative to its parent folder."""
    base = os.path.dirname(where.rstrip(b"/"))
    entries: Iterator[tuple[bytes, Any]] = trees.walk(node, where)
    if fmt == "zip":
        _zip(v, entries, base, up)
    else:
        _tar(v, entries, base, up)


def _name(path: bytes, base: bytes) -> str:
    rel = os.path.relpath(path, base or b"/") if path != base else os.path.basename(path)
    return os.fsdecode(rel)


def _zip(v: Vault, entries: Iterator[tuple[bytes, Any]], base: bytes, up: Upload) -> None:
    from strongroom.files.nodes import DIR, FILE

    with zipfile.ZipFile(up, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:  # type: ignore[call-overload]
        for path, node in entries:
            if node.kind not in (FILE, DIR):
                continue  # links and devices have no place in a zip a browser opens
            name = _name(path, base) + ("/" if node.kind == DIR else "")
            name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            stamp = time.gmtime(max(_ZIP_EPOCH, node.mtime_ns // 1_000_000_000))[:6]
            info = zipfile.ZipInfo(name, stamp)
            info.external_attr = ((0o40000 if node.kind == DIR else 0o100000) | node.mode) << 16
            if node.kind == DIR:
                zf.writestr(info, b"")
                continue
            with zf.open(info, "w", force_zip64=True) as out:
                for data in content(v, node):
                    out.write(data)


class _Reader(io.RawIOBase):
    """A file's content as a readable stream (what ``tarfile.addfile`` takes)."""

    def __init__(self, parts: Iterator[bytes]) -> None:
        self.parts, self.pending = parts, b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        """Exactly ``size`` bytes unless the content ends (tarfile counts on that)."""
        out = bytearray()
        while size < 0 or len(out) < size:
            if not self.pending:
                self.pending = next(self.parts, b"")
                if not self.pending:
                    break
            want = len(self.pending) if size < 0 else size - len(out)
            out += self.pending[:want]
            self.pending = self.pending[want:]
        return bytes(out)


def _tar(v: Vault, entries: Iterator[tuple[bytes, Any]], base: bytes, up: Upload) -> None:
    from strongroom.files.nodes import DIR, FILE, SYMLINK

    with tarfile.open(fileobj=up, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for path, node in entries:
            info = tarfile.TarInfo(_name(path, base))
            info.mode, info.mtime = node.mode & 0o7777, node.mtime_ns / 1e9
            info.uid, info.gid = node.uid, node.gid
            info.uname, info.gname = node.user or "", node.group or ""
            if node.kind == DIR:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif node.kind == SYMLINK and node.target is not None:
                info.type, info.linkname = tarfile.SYMTYPE, os.fsdecode(node.target)
                tar.addfile(info)
            elif node.kind == FILE:
                info.size = node.size
                tar.addfile(info, _Reader(content(v, node)))
