"""The files cache: what a file looked like when its content was last stored, per source
(and, in the same file, what each folder's tree was made of: ``foldercache.py``).

One SQLite file per (vault, source) at
``$XDG_CACHE_HOME/strongroom/files/<vault id hex>/<source>.sqlite``.  A row is a directory's
(``cacherows.py``): for each of its files, inode, size, mtime and ctime (ns) plus the chunk
ids (and sparse extents) of its content.  A file whose inode, size, mtime and ctime all match
is recorded from the row without being read, but only if every one of its chunk ids is still in
the vault's index; a cache that is lost, stale or from another machine only costs a re-read,
never a wrong backup.  Rows are written in one transaction committed after the recovery point;
rows not seen for :data:`FORGET_AFTER_S` are dropped.  A directory whose files all still match
is not rewritten: its row gets a new ``seen`` at most once a day, so a backup of unchanged
files writes almost nothing to the cache.

Every row carries a MAC (keyed BLAKE3, 16 bytes) over everything that decides reuse or is
reused: path, and per file name, inode, size, mtime, ctime, chunk ids and extents, inode
flags and xattrs (both move ctime when they change, so a matching record has the current
ones), under a key derived from the vault's key and the source
(:meth:`Vault.local_cache_key`).  A row whose MAC fails (edited, swapped with another row,
from another vault) is treated as absent: its files are read again.  A cache file SQLite
calls damaged (not a database, malformed) is set aside under a ``.damaged-<time>`` suffix and
rebuilt; any other SQLite failure (locked for a minute, read-only, out of space) costs only
the cache for this backup.  Either way the backup goes on, with a warning.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from strongroom import timingsafe
from strongroom.files.cacherows import (
    DirRows,
    body_mac,
    decode_body,
    prepare_dir,
)
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

FORGET_AFTER_S = 30 * 24 * 3600
_TOUCH_AFTER_S = 24 * 3600
# PRAGMA user_version: a cache of another layout (version 1 had no MACs, version 2 no inode
# flags, version 3 no xattrs, version 4 no folder rows, version 5 a row per file, version 6
# a folder row's fields in ten columns) is emptied on open
_VERSION = 7
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    dir BLOB NOT NULL PRIMARY KEY,
    body BLOB NOT NULL,
    seen INTEGER NOT NULL,
    mac BLOB NOT NULL
) WITHOUT ROWID
"""
_INSERT = "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)"
_ROWS_AT_ONCE = 256  # directory rows inserted by one executemany, or fewer of these bytes:
# 256 rows of folders of 150 files had held 2.4 MiB until written (session 37: a first
# backup's peak memory)
_ROW_BYTES_AT_ONCE = 256 << 10
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_T = TypeVar("_T")


def _damaged(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
    return code in _DAMAGED


def _describe(exc: sqlite3.Error) -> str:
    return str(exc) or type(exc).__name__


def holds_rows(db: sqlite3.Connection) -> bool:
    """Whether the cache has a file or folder row (else a backup has nothing to look up)."""
    query = "SELECT EXISTS (SELECT 1 FROM files) OR EXISTS (SELECT 1 FROM folders)"
    return bool(db.execute(query).fetchone()[0])


def read_dir_rows(
    db: sqlite3.Connection, key: bytes, directory: bytes, now: int
) -> tuple[DirRows, bool]:
    """The directory's authentic records, and whether its row failed its MAC (or did not
    decode: then it is not ours either)."""
    got = db.execute("SELECT body, seen, mac FROM files WHERE dir = ?", (directory,)).fetchone()
    if got is None:
        return DirRows({}), False
    body, seen, mac = got
    if not timingsafe.equal(body_mac(key, directory, body), mac):
        return DirRows({}), True
    try:
        found = decode_body(body)
    except (ValueError, struct.error):
        return DirRows({}), True
    return DirRows(found, seen < now - _TOUCH_AFTER_S), False


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
            db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=60)
            self._db = db
            if not holds_rows(db):  # a first backup: nothing to look up (and nothing comes)
                self.close()

    def lookup_dir(self, directory: bytes) -> DirRows:
        if self._db is None:
            return DirRows({})
        try:
            found, bad = read_dir_rows(self._db, self._key, directory, self._now)
        except sqlite3.Error:
            self.close()
            return DirRows({})
        self.rejected += bad
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
        self._empty = False  # no rows when the backup began: nothing to look up
        # directory -> its row, inserted in batches (the last row of a directory wins, as
        # one INSERT OR REPLACE after another would): one statement a folder cost 23 us
        self._rows: dict[bytes, tuple[bytes, bytes, int, bytes]] = {}
        self._rows_bytes = 0  # of their bodies (a row written again counts twice: sooner)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._give_up(exc.strerror or str(exc))
            return
        self._guard(self._connect, None)

    def _connect(self) -> None:
        db = sqlite3.connect(self.path, timeout=60, isolation_level="DEFERRED")
        # Every value is ours as bytes; a text one (an edited file) comes back as bytes too,
        # and fails its row's MAC, where text that is not UTF-8 failed the whole query
        db.text_factory = bytes
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
        self._empty = not holds_rows(db)

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
        if self._empty:
            return DirRows({})
        if directory in self._rows:
            self._flush_rows()
        return self._guard(lambda: self._lookup(directory), DirRows({}))

    def _lookup(self, directory: bytes) -> DirRows:
        found, bad = read_dir_rows(self.db, self._key, directory, self._now)
        if bad:
            self.rejected += 1
            self.db.execute("DELETE FROM files WHERE dir = ?", (directory,))
        return found

    def lookup_folder(self, directory: bytes) -> FolderRow | None:
        """The folder's authentic row (``foldercache.py``), if any."""
        if self._empty:
            return None
        return self._guard(lambda: self._folders.get(self.db, directory), None)

    @property
    def key(self) -> bytes:
        return self._key

    @property
    def empty(self) -> bool:
        """Whether it held no rows when the backup began (nothing is looked up)."""
        return self._empty

    @property
    def now(self) -> int:
        return self._now

    def store_folders(self, prepared: list[object]) -> None:
        """Folder rows made ready with :func:`foldercache.prepare_folder`, one flat list."""
        self._guard(lambda: self._insert_folders(prepared), None)

    def _insert_folders(self, values: list[object]) -> None:
        n = FOLDER_COLUMNS
        self.db.executemany(FOLDER_INSERT, [values[i : i + n] for i in range(0, len(values), n)])

    def store(self, directory: bytes, kept: list[bytes], rows: list[bytes]) -> None:
        """A directory's row, written again: the records of its files that still matched
        (``kept``) and those of the files read this time (``cacherows.encode_record``)."""
        row = prepare_dir(self._key, directory, kept, rows, self._now)
        self._rows[directory] = row
        self._rows_bytes += len(row[1])
        if len(self._rows) >= _ROWS_AT_ONCE or self._rows_bytes >= _ROW_BYTES_AT_ONCE:
            self._flush_rows()

    def store_prepared(self, prepared: list[tuple[bytes, bytes, int, bytes]]) -> None:
        """Directory rows a backup worker process made ready with :func:`prepare_dir` (and
        this cache's key): the parent only inserts them."""
        for row in prepared:
            self._rows[row[0]] = row
            self._rows_bytes += len(row[1])
        if len(self._rows) >= _ROWS_AT_ONCE or self._rows_bytes >= _ROW_BYTES_AT_ONCE:
            self._flush_rows()

    def _flush_rows(self) -> None:
        rows = list(self._rows.values())
        self._rows.clear()
        self._rows_bytes = 0
        self._guard(lambda: self.db.executemany(_INSERT, rows), None)

    def touch_dir(self, directory: bytes) -> None:
        """Keep a backed-up directory's rows (its files' and its own) alive."""
        self._guard(lambda: self._touch(directory), None)

    def _touch(self, directory: bytes) -> None:
        for table in ("files", "folders"):
            self.db.execute(
                f"UPDATE {table} SET seen = ? WHERE dir = ? AND seen < ?",
                (self._now, directory, self._now - _TOUCH_AFTER_S),
            )

    def trusted_index(self, names: set[str]) -> bool:
        """Whether folder rows need no chunk check (``foldercache.trusted_index``); if not,
        they are dropped."""
        return self._guard(lambda: trusted_index(self.db, self._key, names), False)

    def commit(self, index_names: set[str] | None = None) -> None:
        """Commit the backup's rows; ``index_names``: the index objects the vault relies on
        now (after the point is saved), which the next backup compares with its own."""
        self._flush_rows()
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
