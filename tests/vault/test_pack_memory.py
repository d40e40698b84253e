"""A pack builder's bookkeeping: a pack of small files' chunks holds about 10,000 blobs, and
their entries are kept as the 48-byte records its header stores, not as a tuple of ints per
blob (about 280 bytes: 2.8 MiB a builder, in the backup's parent and in each worker)."""

from __future__ import annotations

import tracemalloc

from strongroom.vault.crypto import VaultKeys
from strongroom.vault.entries import ENTRY_SIZE
from strongroom.vault.pack import PackBuilder

KEYS = VaultKeys.from_master(bytes(range(32)))


def test_a_builder_keeps_its_entries_as_records() -> None:
    n = 5000
    ids = [KEYS.chunk_id(b"%d" % i) for i in range(n)]
    builder = PackBuilder(KEYS, 1 << 20)
    builder.start()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i, cid in enumerate(ids):
            builder.add(cid, 0, b"x", 0, 1000 + i)
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert builder.count == n
    assert grown < n * ENTRY_SIZE * 1.3  # the records, with a bytearray's spare room
    view, entries = builder.finish()
    view.release()
    assert entries.ids() == ids
    assert [raw for *_, raw in entries.rows()] == [1000 + i for i in range(n)]
    builder.start()
    builder.add(ids[0], 0, b"y", 0, 1)
    assert builder.abandon() == [ids[0]] and builder.count == 0
