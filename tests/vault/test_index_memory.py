"""The in-memory index stays within 64 bytes per chunk for a million chunks."""

from __future__ import annotations

import os
import tracemalloc

import numpy as np

from strongroom.vault.entryarrays import ENTRY_DTYPE, entries_of
from strongroom.vault.index import ChunkIndex

CHUNKS = 1_000_000
PER_PACK = 5_000


def synthetic_packs() -> list[tuple[bytes, np.ndarray]]:
    packs = []
    ids = np.frombuffer(os.urandom(32 * CHUNKS), dtype="V32")
    for start in range(0, CHUNKS, PER_PACK):
        entries = np.zeros(PER_PACK, dtype=ENTRY_DTYPE)
        entries["id"] = ids[start : start + PER_PACK]
        entries["offset"] = np.arange(PER_PACK) * 1000
        entries["length"] = 1000
        entries["raw"] = 4000
        packs.append((os.urandom(32), entries))
    return packs


def test_million_chunks_fit_the_budget() -> None:
    packs = synthetic_packs()
    tracemalloc.start()
    index = ChunkIndex()
    for pack_id, entries in packs:
        index.add_pack(pack_id, bytes(32), entries_of(entries), bulk=True)
    index.finish_bulk()
    heap, heap_peak = tracemalloc.get_traced_memory()  # Python heap: not the mapped arrays
    tracemalloc.stop()
    mapped, mapped_peak = index.mapped_bytes()
    per_chunk = (heap + mapped) / CHUNKS
    peak = (heap_peak + mapped_peak) / CHUNKS
    arrays = index.nbytes() / CHUNKS
    print(f"index: {arrays:.1f} B/chunk in arrays, {per_chunk:.1f} B/chunk in all,")
    print(f"       peak while loading {peak:.1f} B/chunk (growth slack included)")
    assert len(index) == CHUNKS
    assert per_chunk <= 64, per_chunk
    assert peak <= 64, peak
    some = bytes(packs[123][1][17]["id"])
    entry = index.lookup(some)
    assert entry is not None and entry.pack == packs[123][0] and entry.offset == 17000
    assert index.lookup(os.urandom(32)) is None


def test_recent_additions_merge_within_budget() -> None:
    packs = synthetic_packs()[:60]
    index = ChunkIndex()
    for pack_id, entries in packs:
        index.add_pack(pack_id, bytes(32), entries_of(entries))
    count = 60 * PER_PACK
    assert len(index) == count
    assert index.nbytes() / count <= 64
    assert all(bytes(e["id"]) in index for e in packs[59][1][:100])


def test_recent_entries_read_back_exactly_before_and_after_the_merge() -> None:
    """Entries wait in a dict of packed ints until merged: every field must survive both."""
    rng = np.random.default_rng(7)
    index = ChunkIndex()
    packs = []
    for _ in range(3):
        entries = np.zeros(50, dtype=ENTRY_DTYPE)
        entries["id"] = np.frombuffer(os.urandom(32 * 50), dtype="V32")
        entries["offset"] = rng.integers(0, 2**32, 50, dtype=np.uint64)
        entries["length"] = rng.integers(0, 2**32, 50, dtype=np.uint64)
        entries["raw"] = rng.integers(0, 2**32, 50, dtype=np.uint64)
        entries["type"] = rng.integers(0, 16, 50)
        entries["flags"] = rng.integers(0, 16, 50)
        entries[0]["offset"], entries[0]["length"], entries[0]["raw"] = 2**32 - 1, 0, 2**32 - 1
        pack_id = os.urandom(32)
        index.add_pack(pack_id, bytes(32), entries_of(entries))
        packs.append((pack_id, entries))

    def expected() -> list[tuple[bytes, int, int, int, int, int]]:
        return [
            (
                pid,
                int(e["offset"]),
                int(e["length"]),
                int(e["raw"]),
                int(e["type"]),
                int(e["flags"]),
            )
            for pid, entries in packs
            for e in entries
        ]

    def found() -> list[tuple[bytes, int, int, int, int, int]]:
        rows = []
        for _, entries in packs:
            for e in entries:
                got = index.lookup(bytes(e["id"]))
                assert got is not None
                rows.append((got.pack, got.offset, got.length, got.raw, got.ctype, got.flags))
        return rows

    assert found() == expected()  # from the dict of recent entries
    index._settle()  # merged into the arrays
    assert found() == expected()
