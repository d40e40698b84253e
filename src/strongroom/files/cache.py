"""The files cache: what a file looked like when its content was last stored, per source
(and, in the same file, what each folder's tree was made of: ``foldercache.py``).

One SQLite file per (vault, source) at
``$XDG_CACHE_HOME/strongroom/files/<vault id hex>/<source>.sqlite``.  A row is keyed by the
file's directory and name (bytes) and holds inode, size, mtime and ctime (ns) plus the chunk
ids (and sparse extents) of its content.  A file whose inode, size, mtime and ctime all match
is recorded from the row without being read, but only if every one of its chunk ids is still in
the vault's index; a cache that is lost, stale or from another machine only costs a re-read,
never a wrong backup.  Rows are written in one transaction committed after the recovery point;
rows not seen for :data:`FORGET_AFTER_S` are dropped.  A row that still matches is not rewritten:
its directory's rows get a new ``seen`` at most once a day, so a backup of unchanged files
writes almost nothing to the cache.

Every row carries a MAC (keyed BLAKE3, 16 bytes) over everything that decides reuse or is
reused: path, inode, size, mtime, ctime, chunk ids and extents, inode flags and xattrs (both
move ctime when they change, so a matching row has the current ones), under a key derived
from the vault's key and the source (:meth:`Vault.local_cache_key`).  A row whose MAC fails
(edited, swapped with another row, from another vault) is treated as absent: the file is read
again.  A cache file SQLite calls damaged (not a database, malformed) is set aside under a
``.damaged-<time>`` suffix and rebuilt; any other SQLite failure (locked for a minute,
read-only, out of space) costs only the cache for this backup.  Either way the backup goes
on, with a warning.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import blake3

from strongroom import timingsafe
from strongroom.files.foldercache import (
    FOLDER_COLUMNS,
    FOLDER_INSERT,
    FOLDER_SCHEMA,
    META_SCHEMA,
    FolderRow,
    FolderRows,
    keep_index_names,
    trusted_index,
)
from strongroom.files.nodes import Xattrs

FORGET_AFTER_S = 30 * 24 * 3600
# (dir, name, ino, size, mtime_ns, ctime_ns, chunk ids, extents or None, inode flags, xattrs)
CacheRow = tuple[bytes, bytes, int, int, int, int, list[bytes], object, int, Xattrs]
_TOUCH_AFTER_S = 24 * 3600
# PRAGMA user_version: a cache of another layout (version 1 had no MACs, version 2 no inode
# flags, version 3 no xattrs, version 4 no folder rows) is emptied on open
_VERSION = 5
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    dir BLOB NOT NULL,
    name BLOB NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    ctime INTEGER NOT NULL,
    chunks BLOB NOT NULL,
    extents TEXT,
    flags INTEGER NOT NULL,
    xattrs BLOB,
    seen INTEGER NOT NULL,
    mac BLOB NOT NULL,
    PRIMARY KEY (dir, name)
) WITHOUT ROWID
"""


_INSERT = "INSERT OR REPLACE INTO files VALUES "
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_PER_ROW = 12  # the columns of _SCHEMA
_ROWS_PER_INSERT = 999 // _PER_ROW  # SQLite before 3.32 takes at most 999 parameters
_MAC_SIZE = 16  # 128 bits: forging one needs the key, guessing one 2**128 tries
# lengths of dir, name, chunks and xattrs (-1: none), then ino, size, mtime, ctime, inode
# flags: every field at a fixed place
_MAC_HEAD = struct.Struct("<IIIiQqqqq")
_XATTR_HEAD = struct.Struct("<HI")  # an xattr's name and value lengths
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_T = TypeVar("_T")


def cache_scope(source: str) -> str:
    """The scope of a source's cache key (:meth:`Vault.local_cache_key`)."""
    return "files-cache/1 " + source


def row_mac(
    key: bytes,
    directory: bytes,
    name: bytes,
    ino: int,
    size: int,
    mtime: int,
    ctime: int,
    chunks: bytes,
    extents: str | None,
    flags: int,
    xattrs: bytes | None = None,
) -> bytes:
    """The MAC of one row (``extents`` and ``xattrs`` as stored: JSON text, bytes or None)."""
    xa = -1 if xattrs is None else len(xattrs)
    head = _MAC_HEAD.pack(
        len(directory), len(name), len(chunks), xa, ino, size, mtime, ctime, flags
    )
    tail = b"\0" if extents is None else b"\1" + extents.encode()
    data = b"".join((head, directory, name, chunks, xattrs or b"", tail))
    return blake3.blake3(data, key=key).digest(_MAC_SIZE)


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

    def matches(self, st: os.stat_result) -> bool:
        return (
            self.ino == st.st_ino
            and self.size == st.st_size
            and self.mtime_ns == st.st_mtime_ns
            and self.ctime_ns == st.st_ctime_ns
        )


def _split(blob: bytes) -> list[bytes]:
    return [blob] if len(blob) == 32 else [blob[i : i + 32] for i in range(0, len(blob), 32)]


def encode_xattrs(xattrs: Xattrs) -> bytes | None:
    """As the row stores them: None for none (most files), else name and value lengths, name
    (file system encoding), value, per xattr."""
    if not xattrs:
        return None
    parts: list[bytes] = []
    for key, value in xattrs:
        raw = os.fsencode(key)
        parts += (_XATTR_HEAD.pack(len(raw), len(value)), raw, value)
    return b"".join(parts)


def decode_xattrs(blob: bytes | None) -> Xattrs:
    """Inverse of :func:`encode_xattrs` (the row's MAC held, so the layout is ours)."""
    if not blob:
        return ()
    found: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(blob):
        n, m = _XATTR_HEAD.unpack_from(blob, pos)
        pos += _XATTR_HEAD.size
        found.append((os.fsdecode(blob[pos : pos + n]), bytes(blob[pos + n : pos + n + m])))
        pos += n + m
    return tuple(found)


def _damaged(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
    return code in _DAMAGED


def _describe(exc: sqlite3.Error) -> str:
    return str(exc) or type(exc).__name__


@dataclass(slots=True)
class DirRows:
    """A directory's authentic rows by name, and whether one of them is due a new ``seen``
    (most backups find none, and then write nothing for the directory)."""

    found: dict[bytes, CacheEntry]
    stale: bool = False


def read_dir_rows(
    db: sqlite3.Connection, key: bytes, directory: bytes, now: int
) -> tuple[DirRows, list[bytes]]:
    """The rows of ``directory`` whose MAC holds, and the names of those it fails."""
    rows = db.execute(
        "SELECT name, ino, size, mtime, ctime, chunks, extents, flags, xattrs, seen, mac"
        " FROM files WHERE dir = ?",
        (directory,),
    ).fetchall()
    out = DirRows({})
    found = out.found
    bad: list[bytes] = []
    stale_before = now - _TOUCH_AFTER_S
    for name, ino, size, mtime, ctime, chunks, extents, flags, xattrs, seen, mac in rows:
        want = row_mac(
            key, directory, name, ino, size, mtime, ctime, chunks, extents, flags, xattrs
        )
        if not timingsafe.equal(want, mac):
            bad.append(name)
            continue
        # "[]": a sparse file of holes only (None: the content covers the whole file)
        ext = [(a, b) for a, b in json.loads(extents)] if extents is not None else None
        xa = decode_xattrs(xattrs) if xattrs else ()
        found[bytes(name)] = CacheEntry(ino, size, mtime, ctime, _split(chunks), ext, flags, xa)
        if seen < stale_before:
            out.stale = True
    return out, bad


class CacheReader:
    """Lookups only, for a backup's worker process: the parent holds the cache's write
    transaction for the whole backup, and in WAL mode a read-only connection still sees the
    last commit.  Rows whose MAC fails count in :attr:`rejected` (the parent replaces them
    when their files are stored again); any SQLite failure turns lookups off (files are read)."""

    def __init__(self, path: Path, key: bytes) -> None:
        self._key = key
        self._now = int(time.time())
        self.rejected = 0
        self._folders = FolderRows(key, self._now - _TOUCH_AFTER_S)
        self._db: sqlite3.Connection | None = None
        with contextlib.suppress(sqlite3.Error):
            self._db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=60)

    def lookup_dir(self, directory: bytes) -> DirRows:
        if self._db is None:
            return DirRows({})
        try:
            found, bad = read_dir_rows(self._db, self._key, directory, self._now)
        except sqlite3.Error:
            self.close()
            return DirRows({})
        self.rejected += len(bad)
        return found

    def lookup_folder(self, directory: bytes) -> FolderRow | None:
        if self._db is None:
            return None
        try:
            return self._folders.get(self._db, directory)
        except sqlite3.Error:
            self.close()
            return None

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()


def prepare_rows(
    key: bytes,
    rows: list[CacheRow],
    now: int,
) -> list[object]:
    """The column values of ``rows`` (see :meth:`FilesCache.store`), one flat list, each row
    with its MAC under ``key``."""
    values: list[object] = []
    for d, n, ino, size, mt, ct, ch, ext, fl, xattrs in rows:
        extents = json.dumps(ext) if ext is not None else None
        chunks = b"".join(ch)
        xa = encode_xattrs(xattrs)
        mac = row_mac(key, d, n, ino, size, mt, ct, chunks, extents, fl, xa)
        values += (d, n, ino, size, mt, ct, chunks, extents, fl, xa, now, mac)
    return values


class FilesCache:
    """One source's cache; use from one thread.

    Never raises for the cache's own troubles: they end up in :attr:`warnings` and cost
    re-reads.  :attr:`rejected` counts rows whose MAC failed.
    """

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self._key = key
        self._now = int(time.time())
        self.warnings: list[str] = []
        self.rejected = 0
        self._folders = FolderRows(key, self._now - _TOUCH_AFTER_S)
        self._db: sqlite3.Connection | None = None
        self._off = False  # set when the cache cannot be used for this backup
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._give_up(exc.strerror or str(exc))
            return
        self._guard(self._connect, None)

    def _connect(self) -> None:
        db = sqlite3.connect(self.path, timeout=60, isolation_level="DEFERRED")
        self._db = db
        db.execute("PRAGMA journal_mode=WAL")
        # No fsync, not even at the checkpoint that ends a first backup's commit (25-30 ms
        # of 50,000 rows' 8 MiB): a power cut may lose or damage the newest rows, which only
        # costs re-reads, since every row is authenticated and a damaged file is set aside
        db.execute("PRAGMA synchronous=OFF")
        # SQLite's page cache (2 MiB by default) filled with the backup's new rows and stayed:
        # the rows are written once and read once per directory, so 512 KiB does as well
        db.execute("PRAGMA cache_size=-512")
        if db.execute("PRAGMA user_version").fetchone()[0] != _VERSION:
            db.execute("DROP TABLE IF EXISTS files")
            db.execute("DROP TABLE IF EXISTS folders")
            db.execute("DROP TABLE IF EXISTS meta")
            db.execute(f"PRAGMA user_version={_VERSION}")
        db.execute(_SCHEMA)
        db.execute(FOLDER_SCHEMA)
        db.execute(META_SCHEMA)
        db.commit()

    def _guard(self, action: Callable[[], _T], failed: _T) -> _T:
        """Run a cache action; a damaged cache is set aside and rebuilt (then the action runs
        once more), any other SQLite failure turns the cache off for this backup."""
        if self._off:
            return failed
        try:
            return action()
        except sqlite3.Error as exc:
            if not _damaged(exc):
                self._give_up(_describe(exc))
                return failed
            self._set_aside(exc)
        try:
            self._connect()
            return action()
        except sqlite3.Error as exc:
            self._give_up(_describe(exc))
            return failed

    def _give_up(self, reason: str) -> None:
        self.warnings.append(
            f"files cache {self.path} not used ({reason}): every file is read this time"
        )
        self._off = True
        self._close()

    def _set_aside(self, exc: sqlite3.Error) -> None:
        self._close()
        aside = f".damaged-{time.strftime('%Y%m%d-%H%M%S')}"
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.path}{suffix}", f"{self.path}{aside}{suffix}")
        self.warnings.append(
            f"files cache {self.path} is damaged ({_describe(exc)}): set aside as "
            f"{self.path.name}{aside}, rebuilt (unchanged files are read again this time)"
        )

    def _close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.rollback()
            with contextlib.suppress(sqlite3.Error):
                db.close()

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None  # only reached through _guard
        return self._db

    def lookup_dir(self, directory: bytes) -> DirRows:
        """The authentic rows of ``directory``; rows whose MAC fails are dropped."""
        return self._guard(lambda: self._lookup(directory), DirRows({}))

    def _lookup(self, directory: bytes) -> DirRows:
        found, bad = read_dir_rows(self.db, self._key, directory, self._now)
        if bad:
            self.rejected += len(bad)
            self.db.executemany(
                "DELETE FROM files WHERE dir = ? AND name = ?", [(directory, n) for n in bad]
            )
        return found

    def lookup_folder(self, directory: bytes) -> FolderRow | None:
        """The folder's authentic row (``foldercache.py``), if any."""
        return self._guard(lambda: self._folders.get(self.db, directory), None)

    @property
    def key(self) -> bytes:
        return self._key

    @property
    def now(self) -> int:
        return self._now

    def store_folders(self, prepared: list[object]) -> None:
        """Folder rows made ready with :func:`foldercache.prepare_folder`, one flat list."""
        self._guard(lambda: self._insert_folders(prepared), None)

    def _insert_folders(self, values: list[object]) -> None:
        n = FOLDER_COLUMNS
        self.db.executemany(FOLDER_INSERT, [values[i : i + n] for i in range(0, len(values), n)])

    def store(self, rows: list[CacheRow]) -> None:
        """Rows of (dir, name, ino, size, mtime_ns, ctime_ns, chunk ids, extents or None,
        inode flags, xattrs)."""
        self._guard(lambda: self._insert(prepare_rows(self._key, rows, self._now)), None)

    def store_prepared(self, prepared: list[object]) -> None:
        """Rows a backup worker process made ready with :func:`prepare_rows` (and this
        cache's key): the parent only inserts them."""
        self._guard(lambda: self._insert(prepared), None)

    def _insert(self, values: list[object]) -> None:
        # Many rows per statement: SQLite releases the GIL for every step, and a backup's
        # readers hold it in between, so one step per row costs a thread switch per file.
        step = _ROWS_PER_INSERT * _PER_ROW
        for start in range(0, len(values), step):
            part = values[start : start + step]
            self.db.execute(_INSERT + ",".join([_ROW] * (len(part) // _PER_ROW)), part)

    def touch_dir(self, directory: bytes, gone: list[bytes]) -> None:
        """Keep a backed-up directory's rows alive; drop the rows of names no longer there."""
        self._guard(lambda: self._touch(directory, gone), None)

    def _touch(self, directory: bytes, gone: list[bytes]) -> None:
        for table in ("files", "folders"):
            self.db.execute(
                f"UPDATE {table} SET seen = ? WHERE dir = ? AND seen < ?",
                (self._now, directory, self._now - _TOUCH_AFTER_S),
            )
        if gone:
            self.db.executemany(
                "DELETE FROM files WHERE dir = ? AND name = ?", [(directory, n) for n in gone]
            )

    def trusted_index(self, names: set[str]) -> bool:
        """Whether folder rows need no chunk check (``foldercache.trusted_index``); if not,
        they are dropped."""
        return self._guard(lambda: trusted_index(self.db, self._key, names), False)

    def commit(self, index_names: set[str] | None = None) -> None:
        """Commit the backup's rows; ``index_names``: the index objects the vault relies on
        now (after the point is saved), which the next backup compares with its own."""
        if index_names is not None:
            self._guard(lambda: keep_index_names(self.db, self._key, index_names), None)
        self._guard(self._commit, None)

    def _commit(self) -> None:
        for table in ("files", "folders"):
            self.db.execute(
                f"DELETE FROM {table} WHERE seen < ?",
                (self._now - FORGET_AFTER_S,),
            )
        self.db.commit()

    def close(self) -> None:
        self._close()
