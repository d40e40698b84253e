"""One stream in, one file out: ``backup stdin`` and ``cat``.

``backup_stream`` stores what a pipe delivers (a database dump) as a files point holding one
file, ``/NAME``: content-defined chunks like any file, mode 0600, owned by the user running
the backup, mtime now.  A pipe gives no sign that its writer failed (the shell keeps the
exit code of ``pg_dump`` in ``pg_dump | strongroom backup stdin``; only ``set -o pipefail``
reports it), so an empty stream is refused unless asked for: it is the usual trace of a
failed dump.

``cat_file`` writes one file of a files point to a binary stream, chunk after chunk as they
are read (each verified by the reader), holes as zeros.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import field
from typing import Any

from strongroom.chunking import ALGORITHM, CDCParams, ContentChunker, Readable
from strongroom.errors import FilesError
from strongroom.files.metadata import Names
from strongroom.files.nodes import FILE, Node, encode_dir
from strongroom.files.tree import TreeReader, root_node
from strongroom.records import dataclass
from strongroom.vault import PointManifest, RecoveryPoint, Vault

STREAM_MODE = 0o600
_ZEROS = bytes(1 << 20)


@dataclass
class StreamSummary:
    point_id: str = ""
    source: str = ""
    path: str = ""
    size: int = 0
    chunks: int = 0
    bytes_added: int = 0
    duration: float = 0.0
    tags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.point_id,
            "source": self.source,
            "path": self.path,
            "size": self.size,
            "chunks": self.chunks,
            "bytes_added": self.bytes_added,
            "duration": round(self.duration, 3),
        }


def check_stream_name(name: str) -> None:
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise FilesError(f"{name!r} is not a file name (no '/', not empty, not . or ..)")


def backup_stream(
    vault: Vault,
    stream: Readable,
    name: str,
    *,
    source: str | None = None,
    tags: list[str] | None = None,
    allow_empty: bool = False,
) -> StreamSummary:
    """Back ``stream`` up as ``/NAME`` in a new files point (source ``HOST:stdin:NAME``)."""
    check_stream_name(name)
    started = time.monotonic()
    s = StreamSummary(source=source or f"{socket.gethostname()}:stdin:{name}", path=f"/{name}")
    params = CDCParams()
    with vault.lock():
        writer = vault.writer()
        try:
            chunks = []
            for piece in ContentChunker(params).chunk_file(stream, copy=False):
                s.size += len(piece)
                chunks.append(writer.put(piece).chunk_id)
            if s.size == 0 and not allow_empty:
                raise FilesError(
                    "the stream was empty (did the command before the pipe fail? use "
                    "set -o pipefail; --allow-empty stores an empty file)"
                )
            root = vault.put_tree(writer, *encode_dir([_node(name, s.size, chunks)]))
            writer.flush()
            s.chunks, s.bytes_added = len(chunks), writer.stats.stored_new
            point = vault.save_point(_manifest(vault, s, root, params, tags or []))
        finally:
            writer.close()
    s.point_id, s.duration = point.point_id, time.monotonic() - started
    return s


def _node(name: str, size: int, chunks: list[bytes]) -> Node:
    now = time.time_ns()
    uid, gid = os.getuid(), os.getgid()
    names = Names()
    return Node(
        name=os.fsencode(name),
        kind=FILE,
        mode=STREAM_MODE,
        uid=uid,
        gid=gid,
        user=names.user(uid) or "",
        group=names.group(gid) or "",
        mtime_ns=now,
        atime_ns=now,
        size=size,
        chunks=chunks,
    )


def _manifest(
    vault: Vault, s: StreamSummary, root: bytes, params: CDCParams, tags: list[str]
) -> PointManifest:
    earlier = [
        p for p in vault.points() if p.manifest.kind == "files" and p.manifest.source == s.source
    ]
    return PointManifest(
        kind="files",
        source=s.source,
        roots=[root.hex()],
        parent=earlier[-1].point_id if earlier else None,
        consistency="per-file",
        tags=tags,
        summary={
            "files": 1,
            "logical_bytes": s.size,
            "bytes_read": s.size,
            "bytes_added": s.bytes_added,
        },
        meta={
            "paths": [s.path],
            "stdin": True,
            "tree_format": "files-tree/1",
            "chunker": {
                "algorithm": ALGORITHM,
                "min": params.min_size,
                "avg": params.avg_size,
                "max": params.max_size,
            },
        },
    )


def cat_file(
    vault: Vault, point: RecoveryPoint, path: str, write: Callable[[memoryview], Any]
) -> int:
    """Write the file at ``path`` in ``point`` through ``write``; the bytes written."""
    trees = TreeReader(vault)
    node = trees.lookup(root_node(point), path)
    if node is None:
        raise FilesError(f"{path}: not in recovery point {point.short_id}")
    if node.kind != FILE:
        raise FilesError(f"{path}: not a file (cat writes files only)")
    data = vault.read_chunks(node.chunks)
    try:
        _write_extents(node, data, write, path)
    finally:
        close = getattr(data, "close", None)  # a generator: its read pool shuts down
        if close is not None:
            close()
    return node.size


def _write_extents(
    node: Node, data: Iterator[bytes], write: Callable[[memoryview], Any], path: str
) -> None:
    """The chunks cover the data extents back to back (a chunk may span two); the gaps are
    holes."""
    pending = memoryview(b"")
    at = 0
    for offset, length in node.data_extents():
        _zeros(write, offset - at)
        at = offset
        while at < offset + length:
            if not pending:
                chunk = next(data, None)
                if chunk is None:
                    raise FilesError(f"{path}: its chunks end before its data")
                pending = memoryview(chunk)
            piece = pending[: offset + length - at]
            write(piece)
            at += len(piece)
            pending = pending[len(piece) :]
    _zeros(write, node.size - at)


def _zeros(write: Callable[[memoryview], Any], count: int) -> None:
    while count > 0:
        step = min(count, len(_ZEROS))
        write(memoryview(_ZEROS)[:step])
        count -= step
