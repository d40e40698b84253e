"""The chunk index: chunk id -> (pack, offset, length, raw length, type, flags).

In memory it is a set of parallel numpy arrays sorted by the first 8 bytes of the id (49 bytes
per chunk) plus a small dict of recent additions that is merged in batches, so a vault of
millions of chunks fits the 64-bytes-per-chunk budget.  Index objects persist it (see
``docs/format.md``).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from strongroom.errors import IntegrityError
from strongroom.vault.pack import ENTRY_DTYPE

_MERGE_AT = 1 << 16
_U32 = struct.Struct("<I")
_COUNTS = struct.Struct("<II")


@dataclass(frozen=True, slots=True)
class IndexEntry:
    pack: bytes
    offset: int
    length: int
    raw: int
    ctype: int
    flags: int


def _prefix(chunk_id: bytes) -> np.uint64:
    return np.uint64(int.from_bytes(chunk_id[:8], "little"))


class ChunkIndex:
    """Thread-safe compact index of every chunk the vault holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pack_ids: list[bytes] = []
        self.pack_salts: list[bytes] = []
        self._pack_pos: dict[bytes, int] = {}
        self._prefix = np.empty(0, dtype=np.uint64)
        self._rest = np.empty(0, dtype="V24")
        self._pack = np.empty(0, dtype=np.uint32)
        self._offset = np.empty(0, dtype=np.uint32)
        self._length = np.empty(0, dtype=np.uint32)
        self._raw = np.empty(0, dtype=np.uint32)
        self._tf = np.empty(0, dtype=np.uint8)
        self._recent: dict[bytes, tuple[int, int, int, int, int]] = {}
        self._pending: list[tuple[int, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self._prefix) + len(self._recent) + sum(len(e) for _, e in self._pending)

    def nbytes(self) -> int:
        """Bytes held by the per-chunk arrays (the budget the spec promises)."""
        arrays = (
            self._prefix,
            self._rest,
            self._pack,
            self._offset,
            self._length,
            self._raw,
            self._tf,
        )
        return sum(a.nbytes for a in arrays)

    def _pack_index(self, pack_id: bytes, salt: bytes) -> int:
        pos = self._pack_pos.get(pack_id)
        if pos is None:
            pos = len(self.pack_ids)
            self.pack_ids.append(pack_id)
            self.pack_salts.append(salt)
            self._pack_pos[pack_id] = pos
        return pos

    def add_pack(
        self, pack_id: bytes, salt: bytes, entries: np.ndarray, *, bulk: bool = False
    ) -> None:
        """Index every entry of one pack.  ``bulk`` defers sorting to :meth:`finish_bulk`."""
        with self._lock:
            pos = self._pack_index(pack_id, salt)
            if bulk:
                self._pending.append((pos, entries))
                return
            for e in entries:
                cid = bytes(e["id"])
                tf = int(e["type"]) | (int(e["flags"]) << 4)
                self._recent[cid] = (pos, int(e["offset"]), int(e["length"]), int(e["raw"]), tf)
            if len(self._recent) >= _MERGE_AT:
                self._merge_recent()

    def finish_bulk(self) -> None:
        with self._lock:
            parts = self._pending
            self._pending = []
            for pos, entries in parts:
                ids = np.frombuffer(entries["id"].tobytes(), dtype=np.uint8).reshape(-1, 32)
                tf = entries["type"] | (entries["flags"] << 4)
                cols = (
                    np.full(len(entries), pos),
                    entries["offset"],
                    entries["length"],
                    entries["raw"],
                    tf,
                )
                self._append(ids, *cols)
            if parts:
                self._sort()

    def _append(self, ids: np.ndarray, *cols: np.ndarray) -> None:
        prefix = ids[:, :8].copy().view("<u8").reshape(-1).astype(np.uint64)
        rest = ids[:, 8:].copy().view("V24").reshape(-1)
        self._prefix = np.concatenate([self._prefix, prefix])
        self._rest = np.concatenate([self._rest, rest])
        pack, offset, length, raw, tf = cols
        self._pack = np.concatenate([self._pack, pack.astype(np.uint32)])
        self._offset = np.concatenate([self._offset, offset.astype(np.uint32)])
        self._length = np.concatenate([self._length, length.astype(np.uint32)])
        self._raw = np.concatenate([self._raw, raw.astype(np.uint32)])
        self._tf = np.concatenate([self._tf, tf.astype(np.uint8)])

    def _sort(self) -> None:
        order = np.argsort(self._prefix, kind="stable")
        self._prefix = self._prefix[order]
        self._rest = self._rest[order]
        self._pack = self._pack[order]
        self._offset = self._offset[order]
        self._length = self._length[order]
        self._raw = self._raw[order]
        self._tf = self._tf[order]

    def _merge_recent(self) -> None:
        recent = self._recent
        self._recent = {}
        ids = np.frombuffer(b"".join(recent), dtype=np.uint8).reshape(-1, 32)
        vals = np.array(list(recent.values()), dtype=np.uint64).reshape(-1, 5)
        self._append(ids, *(vals[:, k] for k in range(5)))
        self._sort()

    def _find(self, chunk_id: bytes) -> int:
        key = _prefix(chunk_id)
        i = int(np.searchsorted(self._prefix, key))
        rest = chunk_id[8:]
        n = len(self._prefix)
        while i < n and self._prefix[i] == key:
            if bytes(self._rest[i]) == rest:
                return i
            i += 1
        return -1

    def lookup(self, chunk_id: bytes) -> IndexEntry | None:
        with self._lock:
            hit = self._recent.get(chunk_id)
            if hit is not None:
                pos, off, length, raw, tf = hit
            else:
                i = self._find(chunk_id)
                if i < 0:
                    return None
                pos, off, length = int(self._pack[i]), int(self._offset[i]), int(self._length[i])
                raw, tf = int(self._raw[i]), int(self._tf[i])
            return IndexEntry(self.pack_ids[pos], off, length, raw, tf & 0xF, tf >> 4)

    def __contains__(self, chunk_id: object) -> bool:
        if not isinstance(chunk_id, bytes):
            return False
        with self._lock:
            return chunk_id in self._recent or self._find(chunk_id) >= 0

    def salt_of(self, pack_id: bytes) -> bytes:
        with self._lock:
            return self.pack_salts[self._pack_pos[pack_id]]

    def has_pack(self, pack_id: bytes) -> bool:
        with self._lock:
            return pack_id in self._pack_pos

    def iter_entries(self) -> Iterator[tuple[bytes, IndexEntry]]:
        """Every (chunk id, entry); order unspecified.  Call with no writer active."""
        with self._lock:
            if self._recent:
                self._merge_recent()
        for i in range(len(self._prefix)):
            cid = int(self._prefix[i]).to_bytes(8, "little") + bytes(self._rest[i])
            tf = int(self._tf[i])
            entry = IndexEntry(
                self.pack_ids[int(self._pack[i])],
                int(self._offset[i]),
                int(self._length[i]),
                int(self._raw[i]),
                tf & 0xF,
                tf >> 4,
            )
            yield cid, entry

    def totals(self) -> tuple[int, int, int]:
        """(chunks, stored bytes, raw bytes) over unique chunk ids."""
        with self._lock:
            if self._recent:
                self._merge_recent()
            return len(self._prefix), int(self._length.sum()), int(self._raw.sum())


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
