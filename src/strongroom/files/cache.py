"""The files cache: what a file looked like when its content was last stored, per source.

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
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

FORGET_AFTER_S = 30 * 24 * 3600
_TOUCH_AFTER_S = 24 * 3600
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
    seen INTEGER NOT NULL,
    PRIMARY KEY (dir, name)
) WITHOUT ROWID
"""


_INSERT = "INSERT OR REPLACE INTO files VALUES "
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
_ROWS_PER_INSERT = 999 // 9  # SQLite before 3.32 takes at most 999 parameters


@dataclass(frozen=True, slots=True)
class CacheEntry:
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    chunks: list[bytes]
    extents: list[tuple[int, int]] | None

    def matches(self, st: os.stat_result) -> bool:
        return (
            self.ino == st.st_ino
            and self.size == st.st_size
            and self.mtime_ns == st.st_mtime_ns
            and self.ctime_ns == st.st_ctime_ns
        )


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "strongroom" / "files"


def cache_path(vault_id: bytes, source: str, root: Path | None = None) -> Path:
    safe = quote(source, safe="") or "_"
    return (root or default_cache_dir()) / vault_id.hex() / f"{safe}.sqlite"


def _split(blob: bytes) -> list[bytes]:
    return [blob[i : i + 32] for i in range(0, len(blob), 32)]


class FilesCache:
    """One source's cache; use from one thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=60, isolation_level="DEFERRED")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # SQLite's page cache (2 MiB by default) filled with the backup's new rows and stayed:
        # the rows are written once and read once per directory, so 512 KiB does as well
        self._db.execute("PRAGMA cache_size=-512")
        self._db.execute(_SCHEMA)
        self._db.commit()
        self._now = int(time.time())

    def lookup_dir(self, directory: bytes) -> dict[bytes, CacheEntry]:
        rows = self._db.execute(
            "SELECT name, ino, size, mtime, ctime, chunks, extents FROM files WHERE dir = ?",
            (directory,),
        )
        found: dict[bytes, CacheEntry] = {}
        for name, ino, size, mtime, ctime, chunks, extents in rows:
            ext = [(a, b) for a, b in json.loads(extents)] if extents else None
            found[bytes(name)] = CacheEntry(ino, size, mtime, ctime, _split(chunks), ext)
        return found

    def store(
        self, rows: list[tuple[bytes, bytes, int, int, int, int, list[bytes], object]]
    ) -> None:
        """Rows of (dir, name, ino, size, mtime_ns, ctime_ns, chunk ids, extents or None)."""
        # Many rows per statement: SQLite releases the GIL for every step, and a backup's
        # readers hold it in between, so one step per row costs a thread switch per file.
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            part = rows[start : start + _ROWS_PER_INSERT]
            values: list[object] = []
            for d, n, ino, size, mt, ct, ch, ext in part:
                extents = json.dumps(ext) if ext else None
                values += (d, n, ino, size, mt, ct, b"".join(ch), extents, self._now)
            self._db.execute(_INSERT + ",".join([_ROW] * len(part)), values)

    def touch_dir(self, directory: bytes, gone: list[bytes]) -> None:
        """Keep a backed-up directory's rows alive; drop the rows of names no longer there."""
        self._db.execute(
            "UPDATE files SET seen = ? WHERE dir = ? AND seen < ?",
            (self._now, directory, self._now - _TOUCH_AFTER_S),
        )
        if gone:
            self._db.executemany(
                "DELETE FROM files WHERE dir = ? AND name = ?", [(directory, n) for n in gone]
            )

    def commit(self) -> None:
        self._db.execute("DELETE FROM files WHERE seen < ?", (self._now - FORGET_AFTER_S,))
        self._db.commit()

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.rollback()
        self._db.close()
