"""The files cache's folder rows: a folder whose entries all look as they did reuses its tree.

An unchanged backup used to build every folder's nodes again, answer each file from its cache
row, encode the folder and hash it, only to find the same tree chunk (most of an unchanged
walk's cost after the listing).  A folder row, kept beside the file rows of the same cache,
records what the folder's tree was made of:

- ``digest``: keyed BLAKE3 of the options that shape a tree, every entry's name and ``lstat``
  (mode, inode, device, link count, rdev, owner, size, mtime, ctime, atime) and the owners'
  names: everything a node is made of, or that moves when the rest changes (content moves
  mtime or ctime; xattrs, ACLs, inode flags, a symlink's target and a hard link move ctime);
- ``tree``: the folder's tree chunk id, and ``subs``: its subfolders' names and tree ids;
- ``chunks``: every content chunk of its files, checked against the index before reuse (a
  prune may have removed some, exactly as for file rows);
- the counts the summary adds for it.

A listing whose digest matches, whose chunks are all indexed and whose subfolders end with the
same tree ids (with no listing error) reuses ``tree`` without building a node.  If a subfolder
changed, the folder is built as usual from the ``lstat`` results already taken.  A row is
written only for a folder all of whose entries were recorded without a doubt: no error, no
socket, every file answered by a file row or read into a new row that matches the walker's
``lstat`` (so never a racily clean or inconsistent file).  Rows carry a MAC over everything
reused, under the files cache's key; a row that fails it is ignored.  The backup never moves
the atimes it records: folders are listed with ``O_NOATIME`` and files read with it (as root
or owner), and a symlink's ``lstat`` is taken again after its target is read.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import blake3

from strongroom import timingsafe
from strongroom.files.metadata import Names
from strongroom.files.nodes import FORMAT_VERSION
from strongroom.records import dataclass

if TYPE_CHECKING:  # the cache's modules hand in its connection: a worker loads no SQLite
    import sqlite3

# A row's fields packed in one body (see _BODY_HEAD): SQLite bound and stored ten columns
# in 5.5 us a row, four in 2.6 (packing them 0.5): a first backup writes a row per folder
FOLDER_SCHEMA = """
CREATE TABLE IF NOT EXISTS folders (
    dir BLOB NOT NULL PRIMARY KEY,
    body BLOB NOT NULL,
    seen INTEGER NOT NULL,
    mac BLOB NOT NULL
) WITHOUT ROWID
"""
# The index objects the vault had when the cache was last committed (see trusted_index)
META_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL,
    mac BLOB NOT NULL
) WITHOUT ROWID
"""
FOLDER_INSERT = "INSERT OR REPLACE INTO folders VALUES (?, ?, ?, ?)"
FOLDER_COLUMNS = 4

_ENTRY = struct.Struct("<IQQQQIIqqqqH")  # see entries_digest
_SUB_HEAD = struct.Struct("<H")  # a subfolder's name length, then name and 32-byte tree id
# body: files, others, bytes, the subfolders' blob length; then digest, tree id, subfolders
# (see encode_subs) and chunk ids (32 bytes each)
_BODY_HEAD = struct.Struct("<qqqI")
_DIGEST = 32
_MAC_DIR = struct.Struct("<I")  # the path's length, ahead of path and body in the MAC
_MAC_SIZE = 16
_ID = 32

Entries = Sequence[tuple[bytes, os.stat_result]]


@dataclass(slots=True)
class FolderRow:
    """An authentic folder row (see the module docstring)."""

    digest: bytes
    tree: bytes
    subs: list[tuple[bytes, bytes]]  # (name, tree id) of each subfolder, in name order
    chunks: bytes  # every chunk id of its files, one after the other (see chunk_ids)
    files: int
    others: int
    nbytes: int
    stale: bool = False  # its ``seen`` is due a refresh (with the file rows of the folder)

    def chunk_ids(self) -> list[bytes]:
        """Split only when asked: most rows that are read match or not by their digest
        alone (a folder of 50,000 files spent 12 ms making the list)."""
        blob = self.chunks
        return [blob[i : i + _ID] for i in range(0, len(blob), _ID)]


def digest_salt(exclude_nodump: bool) -> bytes:
    """What, besides the entries, decides a folder's tree: the tree format, and the option
    that leaves entries out by what only their inode flags say."""
    return b"strongroom folder v1 %d %d" % (FORMAT_VERSION, int(exclude_nodump))


def entries_digest(key: bytes, salt: bytes, entries: Entries, names: Names) -> bytes:
    """The keyed digest of a folder's (name, lstat) entries, in order, and their owners'
    names (a renamed user changes nodes without changing any ``lstat``)."""
    digest = EntriesDigest(key, salt)
    for name, st in entries:
        digest.add(name, st)
    return digest.digest(names)


class EntriesDigest:
    """:func:`entries_digest` taken one entry at a time, so that a walk need not keep a
    folder's ``lstat`` results until its end (some 400 bytes an entry; 20 MiB of a folder
    of 50,000 files); the same bytes, so the same digest."""

    def __init__(self, key: bytes, salt: bytes) -> None:
        self.key = key
        self.parts = [salt]
        self.uids: set[int] = set()
        self.gids: set[int] = set()

    def add(self, name: bytes, st: os.stat_result) -> None:
        uid, gid = st.st_uid, st.st_gid
        self.uids.add(uid)
        self.gids.add(gid)
        self.parts.append(
            _ENTRY.pack(
                st.st_mode,
                st.st_ino,
                st.st_dev,
                st.st_nlink,
                st.st_rdev,
                uid,
                gid,
                st.st_size,
                st.st_mtime_ns,
                st.st_ctime_ns,
                st.st_atime_ns,
                len(name),
            )
        )
        self.parts.append(name)

    def digest(self, names: Names) -> bytes:
        owners = [f"u{u}={names.user(u)}" for u in sorted(self.uids)]
        owners += [f"g{g}={names.group(g)}" for g in sorted(self.gids)]
        data = b"".join([*self.parts, "\0".join(owners).encode("utf-8", "surrogateescape")])
        return blake3.blake3(data, key=self.key).digest()


def encode_subs(subs: Iterable[tuple[bytes, bytes]]) -> bytes:
    return b"".join(_SUB_HEAD.pack(len(name)) + name + tree for name, tree in subs)


def decode_subs(blob: bytes) -> list[tuple[bytes, bytes]] | None:
    """:func:`encode_subs`' (name, tree id) pairs; None if ``blob`` is not such a list."""
    out: list[tuple[bytes, bytes]] = []
    pos = 0
    while pos < len(blob):
        if pos + _SUB_HEAD.size > len(blob):
            return None
        (n,) = _SUB_HEAD.unpack_from(blob, pos)
        pos += _SUB_HEAD.size
        if pos + n + _ID > len(blob):
            return None
        out.append((bytes(blob[pos : pos + n]), bytes(blob[pos + n : pos + n + _ID])))
        pos += n + _ID
    return out


def folder_mac(key: bytes, directory: bytes, body: bytes) -> bytes:
    data = b"".join((b"folder\0", _MAC_DIR.pack(len(directory)), directory, body))
    return blake3.blake3(data, key=key).digest(_MAC_SIZE)


def prepare_folder(
    key: bytes,
    directory: bytes,
    digest: bytes,
    tree: bytes,
    subs: Iterable[tuple[bytes, bytes]],
    chunks: Iterable[bytes],
    counts: tuple[int, int, int],
    now: int,
) -> list[object]:
    """The column values of one folder row (``counts``: files, others, bytes), MAC included."""
    sub_blob = encode_subs(subs)
    body = b"".join((_BODY_HEAD.pack(*counts, len(sub_blob)), digest, tree, sub_blob, *chunks))
    return [directory, body, now, folder_mac(key, directory, body)]


def _unpack(body: bytes) -> FolderRow | None:
    """A row's body as written by :func:`prepare_folder`; None if it is not one."""
    fixed = _BODY_HEAD.size + _DIGEST + _ID
    if len(body) < fixed:
        return None
    files, others, nbytes, n = _BODY_HEAD.unpack_from(body)
    chunks = body[fixed + n :]
    if fixed + n > len(body) or len(chunks) % _ID:
        return None
    subs = decode_subs(body[fixed : fixed + n])
    if subs is None:
        return None
    digest = body[_BODY_HEAD.size : _BODY_HEAD.size + _DIGEST]
    tree = body[_BODY_HEAD.size + _DIGEST : fixed]
    return FolderRow(digest, tree, subs, chunks, files, others, nbytes)


_WINDOW = 256  # rows read at once, in key order


class FolderRows:
    """Folder rows looked up by path, read in windows of :data:`_WINDOW` rows in key order
    from the one asked for: a walk asks for folders depth first and by name, nearly key
    order, so one query answers hundreds of lookups (a query per folder cost a tenth of an
    unchanged backup of /usr)."""

    def __init__(self, key: bytes, stale_before: int) -> None:
        self._key, self._stale_before = key, stale_before
        self._rows: dict[bytes, tuple[object, ...]] = {}
        self._low: bytes | None = None  # the window covers [_low, _high] (None: to the end)
        self._high: bytes | None = None

    def get(self, db: sqlite3.Connection, directory: bytes) -> FolderRow | None:
        """The folder's row if there is one and its MAC holds."""
        if not self._covers(directory):
            self._read(db, directory)
        got = self._rows.get(directory)
        return None if got is None else self._check(directory, got)

    def _covers(self, directory: bytes) -> bool:
        if self._low is None or directory < self._low:
            return False
        return self._high is None or directory <= self._high

    def _read(self, db: sqlite3.Connection, directory: bytes) -> None:
        rows = db.execute(
            "SELECT dir, body, seen, mac FROM folders WHERE dir >= ? ORDER BY dir LIMIT ?",
            (directory, _WINDOW),
        ).fetchall()
        self._rows = {bytes(r[0]): r[1:] for r in rows}
        self._low = directory
        self._high = bytes(rows[-1][0]) if len(rows) == _WINDOW else None

    def _check(self, directory: bytes, got: tuple[object, ...]) -> FolderRow | None:
        body, seen, mac = got
        if not (isinstance(body, bytes) and isinstance(mac, bytes) and isinstance(seen, int)):
            return None  # an edited cache file: not ours
        if not timingsafe.equal(folder_mac(self._key, directory, body), mac):
            return None
        row = _unpack(body)
        if row is not None:
            row.stale = seen < self._stale_before
        return row


def _names_blob(names: Iterable[str]) -> bytes:
    return "\n".join(sorted(names)).encode()


def _names_mac(key: bytes, blob: bytes) -> bytes:
    return blake3.blake3(b"index-names\0" + blob, key=key).digest(_MAC_SIZE)


def trusted_index(db: sqlite3.Connection, key: bytes, names: set[str]) -> bool:
    """Whether every index object the vault had at the cache's last commit is still one it
    relies on.  Index objects never change and only a prune or a repair removes one (a
    prune's new object supersedes those it replaces), so then no chunk a folder row names can
    have left the index, and a reuse needs no chunk check.  Otherwise every folder row goes
    (asked before any is read): a row of a folder this backup does not visit would keep
    naming what a prune took, and be trusted after the next commit."""
    got = db.execute("SELECT value, mac FROM meta WHERE name = 'index'").fetchone()
    if got is not None and isinstance(got[0], bytes) and isinstance(got[1], bytes):
        blob, mac = got
        if timingsafe.equal(_names_mac(key, blob), mac):
            before = set(blob.decode().split("\n")) if blob else set()
            if before <= names:
                return True
    db.execute("DELETE FROM folders")
    return False


def keep_index_names(db: sqlite3.Connection, key: bytes, names: Iterable[str]) -> None:
    """Record the index objects the vault relies on as the cache's rows are committed."""
    blob = _names_blob(names)
    db.execute("INSERT OR REPLACE INTO meta VALUES ('index', ?, ?)", (blob, _names_mac(key, blob)))
