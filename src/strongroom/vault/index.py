"""The chunk index: chunk id -> (pack, offset, length, raw length, type, flags).

In memory, rows live in parallel numpy arrays in arrival order (49 bytes per chunk), and a
sorted array of 64-bit keys finds them: the top 32 bits of a key are the first 32 bits of the
chunk id, the low 32 bits the row number.  Sorting those keys in place costs no extra memory,
so the index holds 57 bytes per chunk at rest and barely more while loading, within the
64-bytes-per-chunk budget.  Recent additions wait in a small dict that is merged in batches.
Index objects persist it (see ``docs/format.md``).
"""

from __future__ import annotations

import mmap
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from strongroom.errors import IntegrityError
from strongroom.vault.pack import ENTRY_DTYPE

_MERGE_AT = 1 << 16
# numpy's fixed cost per call (about 40 us for a vectorized search) outweighs a lookup per id
# (about 3 us) below this many ids: a folder of /usr has two files on average
_VECTOR_FROM = 24
_U32 = struct.Struct("<I")
_COUNTS = struct.Struct("<II")
_ROW_BITS = np.uint64(32)
_COLUMNS = (
    ("ids", "V32"),
    ("pack", np.uint32),
    ("offset", np.uint32),
    ("length", np.uint32),
    ("raw", np.uint32),
    ("tf", np.uint8),
)


# Entries added since the last merge into the arrays are one int each in a dict: pack
# position, offset, length, raw size (u32 each) and type/flags (u8) packed into about 44
# bytes, where a tuple of five ints took about 160 (a first backup of 20,000 files: -2.4 MiB).
_U32_MAX = 0xFFFFFFFF
_POS, _OFFSET, _LENGTH, _RAW = 104, 72, 40, 8  # bit offsets; type/flags in the low 8 bits
_RECENT_FIELDS = (
    (_POS, _U32_MAX),
    (_OFFSET, _U32_MAX),
    (_LENGTH, _U32_MAX),
    (_RAW, _U32_MAX),
    (0, 0xFF),
)


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


def _anonymous_map(nbytes: int) -> mmap.mmap:
    """Private anonymous memory (a shared one could not grow: mremap does not extend it)."""
    flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
    return mmap.mmap(-1, nbytes, flags=flags) if flags else mmap.mmap(-1, nbytes)


class _Mapped:
    """A numpy array over an anonymous memory map, grown in place.

    On Linux ``mmap.resize`` is ``mremap``: growing moves page mappings, never copies, and a
    shrink returns the pages at once, so the process never holds an old and a new copy of a
    column (the C heap's ``realloc`` copies arrays below glibc's mmap threshold and may keep
    the old copy resident).  Elsewhere it falls back to a copy.  Resizing while a view of the
    array is alive raises ``BufferError`` instead of leaving the view dangling.
    """

    def __init__(self, dtype: np.dtype | type | str) -> None:
        self.dtype = np.dtype(dtype)
        self._map: mmap.mmap | None = None
        self.array: np.ndarray = np.empty(0, self.dtype)

    def resize(self, capacity: int) -> np.ndarray:
        nbytes = capacity * self.dtype.itemsize
        old = self.array
        self.array = np.empty(0, self.dtype)
        if nbytes == 0:
            del old
            if self._map is not None:
                self._map.close()
            self._map = None
            return self.array
        if self._map is None:
            self._map = _anonymous_map(nbytes)
        else:
            del old
            try:
                self._map.resize(nbytes)
            except (SystemError, OSError):  # no mremap on this platform: copy once
                grown = _anonymous_map(nbytes)
                keep = min(nbytes, len(self._map))
                grown[:keep] = self._map[:keep]
                self._map.close()
                self._map = grown
        self.array = np.frombuffer(self._map, dtype=self.dtype, count=capacity)
        return self.array


@dataclass(frozen=True, slots=True)
class IndexEntry:
    pack: bytes
    offset: int
    length: int
    raw: int
    ctype: int
    flags: int


def _top32(chunk_id: bytes) -> int:
    return int.from_bytes(chunk_id[:4], "big")


class ChunkIndex:
    """Thread-safe compact index of every chunk the vault holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pack_ids: list[bytes] = []
        self.pack_salts: list[bytes] = []
        self._pack_pos: dict[bytes, int] = {}
        self._pack_rows: list[int] = []
        self.conflicts: list[bytes] = []
        """Packs that two index objects list with different entry counts (for check)."""
        self._n = 0
        self._maps = {name: _Mapped(dt) for name, dt in (*_COLUMNS, ("keys", np.uint64))}
        self._cols: dict[str, np.ndarray] = {name: m.array for name, m in self._maps.items()}
        self._keys = self._cols.pop("keys")
        self._peak_capacity = 0
        self._recent: dict[bytes, int] = {}  # chunk id -> _pack_recent(...)
        self._unsorted = False
        self.bulk_only = True
        """No entries were added outside a bulk load (so each pack's rows are one run)."""

    def __len__(self) -> int:
        return self._n + len(self._recent)

    def nbytes(self) -> int:
        """Bytes held per chunk by the arrays (the budget the spec promises)."""
        rows = sum(col.dtype.itemsize for col in self._cols.values()) * self._n
        return rows + self._keys.dtype.itemsize * self._n

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
        self, pack_id: bytes, salt: bytes, entries: np.ndarray, *, bulk: bool = False
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
            if bulk:
                tf = entries["type"] | (entries["flags"] << 4)
                self._append(
                    entries["id"],
                    np.full(len(entries), pos),
                    entries["offset"],
                    entries["length"],
                    entries["raw"],
                    tf,
                )
                self._unsorted = True
                return
            self.bulk_only = False
            self._remember(pos, entries)
            if len(self._recent) >= _MERGE_AT:
                self._merge_recent()

    def _remember(self, pos: int, entries: np.ndarray) -> None:
        # tolist() turns whole columns into Python ints at once (per-row numpy scalars cost
        # microseconds each, and every pack a backup writes comes through here)
        ids = entries["id"].tobytes()
        tf = (entries["type"] | (entries["flags"] << 4)).tolist()
        rows = zip(
            entries["offset"].tolist(),
            entries["length"].tolist(),
            entries["raw"].tolist(),
            tf,
            strict=True,
        )
        recent = self._recent
        for i, (offset, length, raw, kind) in enumerate(rows):
            recent[ids[32 * i : 32 * i + 32]] = _pack_recent(pos, offset, length, raw, kind)

    def finish_bulk(self) -> None:
        with self._lock:
            self._sort()
            self._trim()

    def _trim(self) -> None:
        """Give back the growth slack: at rest the arrays hold exactly the rows."""
        if len(self._keys) > self._n:
            self._resize(self._n)

    def mapped_bytes(self) -> tuple[int, int]:
        """(bytes the arrays hold now, the most they ever held): capacity, slack included."""
        per_row = sum(m.dtype.itemsize for m in self._maps.values())
        return len(self._keys) * per_row, self._peak_capacity * per_row

    def _resize(self, capacity: int) -> None:
        self._peak_capacity = max(self._peak_capacity, capacity)
        self._keys = np.empty(0, np.uint64)  # let go of the views so the maps can move
        self._cols = {
            name: np.empty(0, m.dtype) for name, m in self._maps.items() if name != "keys"
        }
        for name, mapped in self._maps.items():
            if name == "keys":
                self._keys = mapped.resize(capacity)
            else:
                self._cols[name] = mapped.resize(capacity)

    def _append(self, ids: np.ndarray, *cols: np.ndarray) -> None:
        """Grow the row arrays in place (remapped, not copied) and add ``ids``' keys."""
        start, count = self._n, len(ids)
        need = start + count
        if need > len(self._cols["ids"]):
            # Grow by 1/16: growing remaps pages (no copy), so small steps cost little, and
            # the slack stays within the 64 B/chunk budget (it is trimmed after loading).
            self._resize(max(need, len(self._cols["ids"]) * 17 // 16 + 1024))
        self._cols["ids"][start:need] = ids
        for (name, _), values in zip(_COLUMNS[1:], cols, strict=True):
            self._cols[name][start:need] = values
        top = np.frombuffer(np.ascontiguousarray(ids).tobytes(), dtype=">u4")[::8].astype(np.uint64)
        self._keys[start:need] = (top << _ROW_BITS) | np.arange(start, need, dtype=np.uint64)
        self._n = need

    def _sort(self) -> None:
        if self._unsorted:
            self._keys[: self._n].sort()
            self._unsorted = False

    def _merge_recent(self) -> None:
        recent, self._recent = self._recent, {}
        ids = np.frombuffer(b"".join(recent), dtype="V32")
        n = len(recent)
        packed = recent.values()
        self._append(
            ids,
            *(
                np.fromiter((v >> shift & mask for v in packed), dtype=np.uint64, count=n)
                for shift, mask in _RECENT_FIELDS
            ),
        )
        self._unsorted = True
        self._sort()

    def _find(self, chunk_id: bytes) -> int:
        # Python ints and array methods: numpy scalar arithmetic costs microseconds per
        # lookup, and a backup of unchanged files looks up every chunk of every file.
        n = self._n
        if n == 0:
            return -1
        top = _top32(chunk_id)
        keys = self._keys
        i = int(keys[:n].searchsorted(np.uint64(top << 32)))
        ids = self._cols["ids"]
        while i < n:
            key = int(keys[i])
            if key >> 32 != top:
                break
            row = key & 0xFFFFFFFF
            if ids[row].tobytes() == chunk_id:
                return row
            i += 1
        return -1

    def _entry(self, row: int) -> IndexEntry:
        c = self._cols
        tf = int(c["tf"][row])
        pack = self.pack_ids[int(c["pack"][row])]
        return IndexEntry(
            pack,
            int(c["offset"][row]),
            int(c["length"][row]),
            int(c["raw"][row]),
            tf & 0xF,
            tf >> 4,
        )

    def lookup(self, chunk_id: bytes) -> IndexEntry | None:
        with self._lock:
            hit = self._recent.get(chunk_id)
            if hit is not None:
                pos, off, length, raw, tf = _unpack_recent(hit)
                return IndexEntry(self.pack_ids[pos], off, length, raw, tf & 0xF, tf >> 4)
            self._sort()
            row = self._find(chunk_id)
            return None if row < 0 else self._entry(row)

    def place(self, chunk_id: bytes) -> int | None:
        """Where ``chunk_id`` lies as one int (the recent entries' form: the pack's position,
        then offset, length, raw size, type and flags), None if it is not indexed.  Places
        sort in the packs' order; :meth:`entry_at` turns one back into an entry."""
        with self._lock:
            hit = self._recent.get(chunk_id)
            if hit is not None:
                return hit
            self._sort()
            row = self._find(chunk_id)
            if row < 0:
                return None
            c = self._cols
            return _pack_recent(
                int(c["pack"][row]),
                int(c["offset"][row]),
                int(c["length"][row]),
                int(c["raw"][row]),
                int(c["tf"][row]),
            )

    def entry_at(self, place: int) -> IndexEntry:
        """The entry a :meth:`place` value encodes."""
        pos, off, length, raw, tf = _unpack_recent(place)
        return IndexEntry(self.pack_ids[pos], off, length, raw, tf & 0xF, tf >> 4)

    def __contains__(self, chunk_id: object) -> bool:
        if not isinstance(chunk_id, bytes):
            return False
        with self._lock:
            if chunk_id in self._recent:
                return True
            self._sort()
            return self._find(chunk_id) >= 0

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
            self._sort()

    def iter_entries(self) -> Iterator[tuple[bytes, IndexEntry]]:
        """Every (chunk id, entry), duplicates included; call with no writer active."""
        self._settle()
        ids = self._cols["ids"]
        for row in range(self._n):
            yield bytes(ids[row]), self._entry(row)

    # --- bulk access for prune and repair (call with no writer active) ----------------------

    @property
    def rows(self) -> int:
        """Rows in the arrays (every indexed copy) after merging recent additions."""
        self._settle()
        return self._n

    def column(self, name: str) -> np.ndarray:
        """A read-only view of one row column: ids, pack, offset, length, raw or tf.

        Valid only while nothing is added (growing the arrays moves them): for prune and
        repair, which read a freshly loaded index that no writer touches.
        """
        self._settle()
        view = self._cols[name][: self._n].view()
        view.flags.writeable = False
        return view

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row numbers (int64) of ``ids`` (a V32 array), -1 for ids not indexed; vectorized."""
        self._settle()
        ids = np.ascontiguousarray(ids, dtype="V32")
        with self._lock:
            return self._rows_locked(ids)

    def missing(self, ids: list[bytes]) -> set[bytes]:
        """Those of ``ids`` not indexed, in one vectorized search.  Recent additions are looked
        up where they wait: merging them (a sort) for every call would cost a backup, which
        asks this once per folder while it adds chunks, a sort per folder."""
        if not ids:
            return set()
        with self._lock:
            self._sort()
            recent = self._recent
            if len(ids) < _VECTOR_FROM:
                return {c for c in ids if c not in recent and self._find(c) < 0}
            rows = self._rows_locked(np.frombuffer(b"".join(ids), dtype="V32"))
            return {ids[i] for i in np.flatnonzero(rows < 0).tolist() if ids[i] not in recent}

    def _rows_locked(self, ids: np.ndarray) -> np.ndarray:
        n = self._n
        if n == 0 or len(ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        keys = self._keys[:n]
        top = np.frombuffer(ids.tobytes(), dtype=">u4")[::8].astype(np.uint64) << _ROW_BITS
        pos = np.minimum(np.searchsorted(keys, top), n - 1)
        found = keys[pos]
        rows = (found & np.uint64(0xFFFFFFFF)).astype(np.int64)
        same = (found >> _ROW_BITS) == (top >> _ROW_BITS)
        same[same] = self._cols["ids"][rows[same]] == ids[same]
        rows[~same] = -1
        for i in np.flatnonzero(~same):  # missing, or a later key with the same top bits
            rows[i] = self._find(ids[i].tobytes())
        return rows

    def entries_at(self, rows: np.ndarray) -> np.ndarray:
        """Pack-header entries (:data:`ENTRY_DTYPE`) rebuilt from the given rows."""
        c = self._cols
        out = np.zeros(len(rows), dtype=ENTRY_DTYPE)
        out["id"] = c["ids"][rows]
        tf = c["tf"][rows]
        out["type"] = tf & 0xF
        out["flags"] = tf >> 4
        out["offset"] = c["offset"][rows]
        out["length"] = c["length"][rows]
        out["raw"] = c["raw"][rows]
        return out

    def totals(self) -> tuple[int, int, int]:
        """(chunks, stored bytes, raw bytes) over every indexed copy."""
        self._settle()
        n = self._n
        return n, int(self._cols["length"][:n].sum()), int(self._cols["raw"][:n].sum())


# --- index objects ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PackRecord:
    pack_id: bytes
    salt: bytes
    entries: np.ndarray


def encode_index(packs: Iterable[PackRecord], supersedes: Iterable[bytes] = ()) -> bytes:
    """Plaintext of an index object (sealed by the caller)."""
    packs = list(packs)
    sup = list(supersedes)
    parts = [_COUNTS.pack(len(sup), len(packs)), *sup]
    for rec in packs:
        parts += [rec.pack_id, rec.salt, _U32.pack(len(rec.entries)), rec.entries.tobytes()]
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
            size = count * ENTRY_DTYPE.itemsize
            if pos + size > len(plain) or len(pack_id) != 32:
                raise ValueError("entries run past the end")
            entries = np.frombuffer(plain, dtype=ENTRY_DTYPE, count=count, offset=pos)
            packs.append(PackRecord(pack_id, salt, entries))
            pos += size
        if pos != len(plain):
            raise ValueError("trailing bytes")
    except (struct.error, ValueError) as exc:
        raise IntegrityError(f"{name}: malformed index object ({exc})", name=name) from None
    return packs, sup
