"""The chunk index: chunk id -> (pack, offset, length, raw length, type, flags).

Rows (:mod:`strongroom.vault.indexrows`) hold every loaded entry, 60 bytes per chunk, within
the 64-bytes-per-chunk budget.  Recent additions wait in a small dict that is merged in
batches.  Lookups are plain Python; numpy is imported only for big sorts and for the bulk
queries of prune, repair and check, so backups and restores of small vaults never load it.
Index objects persist it (see ``docs/format.md``).
"""

from __future__ import annotations

import struct
import sys
import threading
from array import array
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from strongroom.errors import IntegrityError
from strongroom.records import dataclass
from strongroom.vault.entries import ENTRY, ENTRY_SIZE, Entries
from strongroom.vault.indexrows import RowStore

if TYPE_CHECKING:
    import numpy as np

# A pack's entries go into the row store (60 bytes each), whose sort keys the new rows and
# merges them in with one pass over the old keys (_keysort.c), when the pack holds at least
# this many; fewer (a pack of big chunks) wait in a dict (about 180 bytes each: id, int,
# slot) until it holds this many, then move in one merge.  The threshold follows the store's
# size, so that the pass costs at most 16 keys' worth per new entry.  With one fixed 65,536
# a first backup's processes each kept every new entry in the dict (copies' 9,000 a process:
# 1.6 MiB, and a Python loop over them per pack), and merging them later copied them again.
_MERGE_LEAST = 1 << 12
_MERGE_MOST = 1 << 16
# numpy's fixed cost per call (about 40 us for a vectorized search) outweighs a lookup per id
# (about 2 us) below this many ids: a folder of /usr has two files on average
_VECTOR_FROM = 24
_U32 = struct.Struct("<I")
_COUNTS = struct.Struct("<II")


# Entries added since the last merge into the rows are one int each in a dict: pack
# position, offset, length, raw size (u32 each) and type/flags (u8) packed into about 44
# bytes, where a tuple of five ints took about 160 (a first backup of 20,000 files: -2.4 MiB).
_U32_MAX = 0xFFFFFFFF
_POS, _OFFSET, _LENGTH, _RAW = 104, 72, 40, 8  # bit offsets; type/flags in the low 8 bits


def _pack_recent(pos: int, offset: int, length: int, raw: int, tf: int) -> int:
    return pos << _POS | offset << _OFFSET | length << _LENGTH | raw << _RAW | tf


def _unpack_recent(v: int) -> tuple[int, int, int, int, int]:
    """(pos, offset, length, raw, tf) of a :func:`_pack_recent` value."""
    return (
        v >> _POS,
        v >> _OFFSET & _U32_MAX,
        v >> _LENGTH & _U32_MAX,
        v >> _RAW & _U32_MAX,
        v & 0xFF,
    )


def _tf(ctype: int, flags: int) -> int:
    """Type and flags in one byte, as the index keeps them (4 bits each)."""
    return (ctype | flags << 4) & 0xFF


@dataclass(frozen=True, slots=True)
class IndexEntry:
    pack: bytes
    offset: int
    length: int
    raw: int
    ctype: int
    flags: int


class ChunkIndex:
    """Thread-safe compact index of every chunk the vault holds.

    ``vector``: how the rows sort their keys (:class:`~strongroom.vault.indexrows.RowStore`;
    tests pin it, both ways must give the same answers).
    """

    def __init__(self, vector: bool | None = None) -> None:
        self._lock = threading.Lock()
        self.pack_ids: list[bytes] = []
        self.pack_salts: list[bytes] = []
        self._pack_pos: dict[bytes, int] = {}
        self._pack_rows: list[int] = []
        self.conflicts: list[bytes] = []
        """Packs that two index objects list with different entry counts (for check)."""
        self._store = RowStore(vector)
        self._recent: dict[bytes, int] = {}  # chunk id -> _pack_recent(...)
        self.bulk_only = True
        """No entries were added outside a bulk load (so each pack's rows are one run)."""

    def __len__(self) -> int:
        return self._store.n + len(self._recent)

    def nbytes(self) -> int:
        """Bytes held per chunk by the rows (the budget the spec promises)."""
        return self._store.nbytes()

    def mapped_bytes(self) -> tuple[int, int]:
        """(bytes the rows hold now, the most they ever held): capacity, slack included."""
        return self._store.mapped_bytes()

    def _pack_index(self, pack_id: bytes, salt: bytes) -> int:
        pos = self._pack_pos.get(pack_id)
        if pos is None:
            pos = len(self.pack_ids)
            self.pack_ids.append(pack_id)
            self.pack_salts.append(salt)
            self._pack_rows.append(0)
            self._pack_pos[pack_id] = pos
        return pos

    def add_pack(
        self, pack_id: bytes, salt: bytes, entries: Entries, *, bulk: bool = False
    ) -> None:
        """Index every entry of one pack.  ``bulk`` appends now and sorts in :meth:`finish_bulk`.

        A pack record always lists the pack's whole header, so when loading (``bulk``) a pack
        already indexed is skipped: no duplicate rows, and each pack's rows stay one run.
        """
        with self._lock:
            if bulk and pack_id in self._pack_pos:
                if self._pack_rows[self._pack_pos[pack_id]] != len(entries):
                    self.conflicts.append(pack_id)
                return
            pos = self._pack_index(pack_id, salt)
            self._pack_rows[pos] += len(entries)
            merge_at = min(_MERGE_MOST, max(_MERGE_LEAST, self._store.n >> 4))
            if bulk or len(entries) >= merge_at:  # a pack of many small chunks: no dict
                self._store.append(entries.data, array("I", [pos]) * len(entries))
                if not bulk:
                    self.bulk_only = False
                    self._store.sort()
                return
            self.bulk_only = False
            recent = self._recent
            for cid, ctype, flags, _, offset, length, raw in entries.rows():
                recent[cid] = _pack_recent(pos, offset, length, raw, _tf(ctype, flags))
            if len(recent) >= merge_at:
                self._merge_recent()

    def finish_bulk(self) -> None:
        with self._lock:
            self._store.trim()
            self._store.sort()

    def _merge_recent(self) -> None:
        recent, self._recent = self._recent, {}
        records, packs = [], array("I")
        for cid, place in recent.items():
            pos, offset, length, raw, tf = _unpack_recent(place)
            records.append(ENTRY.pack(cid, tf & 0xF, tf >> 4, 0, offset, length, raw))
            packs.append(pos)
        self._store.append(b"".join(records), packs)
        self._store.sort()

    def _find(self, chunk_id: bytes) -> int:
        self._store.sort()
        return self._store.find(chunk_id)

    def _place_of(self, row: int) -> int:
        _, ctype, flags, _, offset, length, raw = self._store.record(row)
        return _pack_recent(self._store.pack(row), offset, length, raw, _tf(ctype, flags))

    def lookup(self, chunk_id: bytes) -> IndexEntry | None:
        place = self.place(chunk_id)
        return None if place is None else self.entry_at(place)

    def place(self, chunk_id: bytes) -> int | None:
        """Where ``chunk_id`` lies as one int (the recent entries' form: the pack's position,
        then offset, length, raw size, type and flags), None if it is not indexed.  Places
        sort in the packs' order; :meth:`entry_at` turns one back into an entry."""
        with self._lock:
            hit = self._recent.get(chunk_id)
            if hit is not None:
                return hit
            row = self._find(chunk_id)
            return None if row < 0 else self._place_of(row)

    def entry_at(self, place: int) -> IndexEntry:
        """The entry a :meth:`place` value encodes."""
        pos, off, length, raw, tf = _unpack_recent(place)
        return IndexEntry(self.pack_ids[pos], off, length, raw, tf & 0xF, tf >> 4)

    def __contains__(self, chunk_id: object) -> bool:
        if not isinstance(chunk_id, bytes):
            return False
        with self._lock:
            return chunk_id in self._recent or self._find(chunk_id) >= 0

    def salt_of(self, pack_id: bytes) -> bytes:
        with self._lock:
            return self.pack_salts[self._pack_pos[pack_id]]

    def position_of(self, pack_id: bytes) -> int | None:
        """The pack's position in :attr:`pack_ids`, or None if it is not indexed."""
        with self._lock:
            return self._pack_pos.get(pack_id)

    def has_pack(self, pack_id: bytes) -> bool:
        with self._lock:
            return pack_id in self._pack_pos

    def _settle(self) -> None:
        with self._lock:
            if self._recent:
                self._merge_recent()
            self._store.sort()

    def iter_entries(self) -> Iterator[tuple[bytes, IndexEntry]]:
        """Every (chunk id, entry), duplicates included; call with no writer active."""
        self._settle()
        for row in range(self._store.n):
            yield self._store.record(row)[0], self.entry_at(self._place_of(row))

    def missing(self, ids: list[bytes]) -> set[bytes]:
        """Those of ``ids`` not indexed.  Recent additions are looked up where they wait:
        merging them (a sort) for every call would cost a backup, which asks this once per
        folder while it adds chunks, a sort per folder.  Many ids at once are searched in one
        vectorized call if numpy is loaded anyway (not worth loading it for)."""
        if not ids:
            return set()
        with self._lock:
            recent = self._recent
            if len(ids) < _VECTOR_FROM or "numpy" not in sys.modules:
                self._store.sort()
                return {ids[i] for i in self._store.unfound(ids) if ids[i] not in recent}
            import numpy as np

            self._store.sort()
            rows = self._rows_locked(np.frombuffer(b"".join(ids), dtype="V32"))
            return {ids[i] for i in np.flatnonzero(rows < 0).tolist() if ids[i] not in recent}

    # --- bulk access for prune, repair and check (numpy; call with no writer active) --------

    @property
    def rows(self) -> int:
        """Rows (every indexed copy) after merging recent additions."""
        self._settle()
        return self._store.n

    def column(self, name: str) -> np.ndarray:
        """A read-only array of one row column: ids, pack, offset, length, raw or tf.

        Valid only while nothing is added (growing the rows moves them): for prune and
        repair, which read a freshly loaded index that no writer touches.
        """
        self._settle()
        if name == "pack":
            return self._store.pack_array()
        rows = self._store.entry_array()
        if name == "tf":
            tf: np.ndarray = rows["type"] | (rows["flags"] << 4)
            tf.flags.writeable = False
            return tf
        return rows["id" if name == "ids" else name]

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row numbers (int64) of ``ids`` (a V32 array), -1 for ids not indexed; vectorized."""
        import numpy as np

        self._settle()
        ids = np.ascontiguousarray(ids, dtype="V32")
        with self._lock:
            return self._rows_locked(ids)

    def _rows_locked(self, ids: np.ndarray) -> np.ndarray:
        import numpy as np

        store = self._store
        n = store.keyed
        if n == 0 or len(ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        keys = store.key_array()
        shift = np.uint64(32)
        top = np.frombuffer(ids.tobytes(), dtype=">u4")[::8].astype(np.uint64) << shift
        pos = np.minimum(np.searchsorted(keys, top), n - 1)
        found = keys[pos]
        rows = (found & np.uint64(0xFFFFFFFF)).astype(np.int64)
        same = (found >> shift) == (top >> shift)
        same[same] = store.entry_array()["id"][rows[same]] == ids[same]
        rows[~same] = -1
        for i in np.flatnonzero(~same):  # missing, or a later key with the same top bits
            rows[i] = store.find(ids[i].tobytes())
        return rows

    def entries_at(self, rows: np.ndarray) -> Entries:
        """The entries of the given rows (type and flags as the index keeps them, 4 bits)."""
        from strongroom.vault.entryarrays import entries_of

        out = self._store.entry_array()[rows]  # a copy
        tf = out["type"] | (out["flags"] << 4)
        out["type"], out["flags"], out["reserved"] = tf & 0xF, tf >> 4, 0
        return entries_of(out)

    def totals(self) -> tuple[int, int, int, int, int]:
        """(chunks, stored bytes, raw bytes) with each chunk counted once, then the copies
        beyond the first and their stored bytes: a chunk in two packs (the processes of one
        backup each stored it before session 25; a repack by prune drops the copy nothing
        reads)."""
        import numpy as np

        self._settle()
        rows = self._store.entry_array()
        _, first = np.unique(rows["id"], return_index=True)
        stored = int(rows["length"][first].sum())
        extra = int(rows["length"].sum()) - stored
        return len(first), stored, int(rows["raw"][first].sum()), len(rows) - len(first), extra


# --- index objects ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PackRecord:
    pack_id: bytes
    salt: bytes
    entries: Entries


def encode_index(packs: Iterable[PackRecord], supersedes: Iterable[bytes] = ()) -> bytes:
    """Plaintext of an index object (sealed by the caller)."""
    packs = list(packs)
    sup = list(supersedes)
    parts = [_COUNTS.pack(len(sup), len(packs)), *sup]
    for rec in packs:
        parts += [rec.pack_id, rec.salt, _U32.pack(len(rec.entries)), rec.entries.data]
    return b"".join(parts)


def decode_index(plain: bytes, name: str) -> tuple[list[PackRecord], list[bytes]]:
    try:
        n_sup, n_packs = _COUNTS.unpack_from(plain)
        pos = _COUNTS.size
        if pos + 32 * n_sup + 68 * n_packs > len(plain):
            raise ValueError("counts run past the end")
        sup = [plain[pos + 32 * i : pos + 32 * (i + 1)] for i in range(n_sup)]
        pos += 32 * n_sup
        packs = []
        for _ in range(n_packs):
            pack_id, salt = plain[pos : pos + 32], plain[pos + 32 : pos + 64]
            (count,) = _U32.unpack_from(plain, pos + 64)
            pos += 68
            size = count * ENTRY_SIZE
            if pos + size > len(plain) or len(pack_id) != 32:
                raise ValueError("entries run past the end")
            packs.append(PackRecord(pack_id, salt, Entries(plain[pos : pos + size])))
            pos += size
        if pos != len(plain):
            raise ValueError("trailing bytes")
    except (struct.error, ValueError) as exc:
        raise IntegrityError(f"{name}: malformed index object ({exc})", name=name) from None
    return packs, sup
