"""The files cache's rows (``cache.py``): one per folder, its files' records in one body.

A record is one file as it was when its content was stored::

    name length u16 | chunk ids' length u32 | extents i32 (-1: none) | xattrs' length i32
    (-1: none) | inode u64 | size i64 | mtime ns i64 | ctime ns i64 | inode flags i64
    name | chunk ids (32 bytes each) | extents (offset i64, length i64 each) | xattrs

(little-endian; xattrs as :func:`encode_xattrs` lays them out).  A folder's row holds the
records of its files, one after the other, and a MAC (keyed BLAKE3, 16 bytes) over the
folder's path and that body: a record moved to another folder, edited, dropped or added fails
the whole row.

Why a row per folder and not per file: 50,000 small files' first backup spent 5.4 us a file on
its cache rows (a MAC each, then SQLite binding twelve columns and inserting into a B-tree
keyed by folder and name), 12 % of its CPU; a folder's body costs 0.7 us a file to encode and
its insert 0.5 (docs/benchmarks.md, "Session 26").  Lookups were per folder already.  When one
file of a folder changes, the folder's row is written again: the records of the files that
still match are kept as they were read (:attr:`CacheEntry.record`), not encoded again.
"""

from __future__ import annotations

import os
import struct

import blake3

try:  # built by setup.py; optional (a build without a compiler uses decode_body_py)
    from strongroom.files import _rowread
except ImportError:  # pragma: no cover
    _rowread = None  # type: ignore[assignment]
from strongroom.files.nodes import Xattrs
from strongroom.records import dataclass

# (dir, name, ino, size, mtime_ns, ctime_ns, chunk ids, extents or None, inode flags, xattrs)
CacheRow = tuple[bytes, bytes, int, int, int, int, list[bytes], object, int, Xattrs]

_RECORD = struct.Struct("<HIiiQqqqq")
_EXTENT = struct.Struct("<qq")
_XATTR_HEAD = struct.Struct("<HI")  # an xattr's name and value lengths
_DIR_HEAD = struct.Struct("<I")
MAC_SIZE = 16  # 128 bits: forging one needs the key, guessing one 2**128 tries
ID = 32


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a call per field, per cached file
class CacheEntry:
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    chunks: list[bytes]
    extents: list[tuple[int, int]] | None
    # inode flags and xattrs: chattr and setxattr move ctime, so a row that matches has the
    # file's flags and xattrs too (they are not read again)
    flags: int = 0
    xattrs: Xattrs = ()
    record: bytes = b""  # as its folder's row holds it (kept when the folder is written again)

    def matches(self, st: os.stat_result) -> bool:
        return (
            self.ino == st.st_ino
            and self.size == st.st_size
            and self.mtime_ns == st.st_mtime_ns
            and self.ctime_ns == st.st_ctime_ns
        )


@dataclass(slots=True)
class DirRows:
    """A directory's authentic rows by name, and whether one of them is due a new ``seen``
    (most backups find none, and then write nothing for the directory)."""

    found: dict[bytes, CacheEntry]
    stale: bool = False


def encode_xattrs(xattrs: Xattrs) -> bytes:
    """Name and value lengths, name (file system encoding), value, per xattr."""
    parts: list[bytes] = []
    for key, value in xattrs:
        raw = os.fsencode(key)
        parts += (_XATTR_HEAD.pack(len(raw), len(value)), raw, value)
    return b"".join(parts)


def decode_xattrs(blob: bytes) -> Xattrs:
    """Inverse of :func:`encode_xattrs` (the row's MAC held, so the layout is ours)."""
    found: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(blob):
        n, m = _XATTR_HEAD.unpack_from(blob, pos)
        pos += _XATTR_HEAD.size
        found.append((os.fsdecode(blob[pos : pos + n]), bytes(blob[pos + n : pos + n + m])))
        pos += n + m
    return tuple(found)


def encode_record(row: CacheRow) -> bytes:
    """One file's record (see the module's docstring)."""
    _, name, ino, size, mtime, ctime, chunks, extents, flags, xattrs = row
    ids = b"".join(chunks)
    xa = encode_xattrs(xattrs) if xattrs else b""
    ext = b""
    if extents is not None:
        pairs: list[tuple[int, int]] = extents  # type: ignore[assignment]
        ext = b"".join([_EXTENT.pack(a, b) for a, b in pairs])
    head = _RECORD.pack(
        len(name),
        len(ids),
        -1 if extents is None else len(ext) // _EXTENT.size,
        len(xa) if xattrs else -1,
        ino,
        size,
        mtime,
        ctime,
        flags,
    )
    return b"".join((head, name, ids, ext, xa))


def decode_body(body: bytes) -> dict[bytes, CacheEntry]:
    """A folder row's records by name; ValueError if they do not add up to the body."""
    if _rowread is not None and type(body) is bytes:
        # _rowread.c: the same entries, 0.3 us a record where this module's loop takes 2
        found: dict[bytes, CacheEntry] = _rowread.decode_body(body, CacheEntry, decode_xattrs)
        return found
    return decode_body_py(body)


def decode_body_py(body: bytes) -> dict[bytes, CacheEntry]:
    """:func:`decode_body` in Python (where the compiled one is missing, and for tests)."""
    found: dict[bytes, CacheEntry] = {}
    pos, end = 0, len(body)
    unpack, head = _RECORD.unpack_from, _RECORD.size
    while pos < end:
        if pos + head > end:
            raise ValueError("a truncated record")
        nlen, clen, next_, xlen, ino, size, mtime, ctime, flags = unpack(body, pos)
        at = pos + head
        stop = at + nlen + clen + max(next_, 0) * _EXTENT.size + max(xlen, 0)
        if stop > end or clen % ID:
            raise ValueError("a record runs past the body")
        name = body[at : at + nlen]
        at += nlen
        ids = body[at : at + clen]
        chunks = [ids] if clen == ID else [ids[i : i + ID] for i in range(0, clen, ID)]
        at += clen
        extents = None
        if next_ >= 0:
            extents = [_EXTENT.unpack_from(body, at + i * _EXTENT.size) for i in range(next_)]
            at += next_ * _EXTENT.size
        xattrs = decode_xattrs(body[at : at + xlen]) if xlen > 0 else ()
        record = body[pos:stop]
        found[name] = CacheEntry(ino, size, mtime, ctime, chunks, extents, flags, xattrs, record)
        pos = stop
    return found


def body_mac(key: bytes, directory: bytes, body: bytes) -> bytes:
    """The MAC of a folder's row: its path and its body, under the cache's key."""
    hasher = blake3.blake3(_DIR_HEAD.pack(len(directory)), key=key)
    hasher.update(directory)
    hasher.update(body)
    return hasher.digest(MAC_SIZE)


def prepare_dir(
    key: bytes, directory: bytes, kept: list[bytes], rows: list[bytes], now: int
) -> tuple[bytes, bytes, int, bytes]:
    """A folder's row, ready to insert: (dir, body, seen, mac).  ``kept``: the records of its
    files whose rows still matched; ``rows``: those of the files read this time that have a
    row (:func:`encode_record`)."""
    body = b"".join(kept + rows)
    return directory, body, now, body_mac(key, directory, body)
