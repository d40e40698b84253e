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


def test_a_view_left_from_a_failed_upload_does_not_stop_the_next_pack() -> None:
    """An upload that fails can leave a view of the builder's buffer alive (in its error's
    traceback); the builder's next pack must still grow its buffer for a big blob."""
    builder = PackBuilder(KEYS, 4096)
    builder.start()
    builder.add(KEYS.chunk_id(b"a"), 0, b"a" * 100, 0, 100)
    view, _ = builder.finish()
    left = view[10:20]  # what a failed write's frame still holds
    view.release()
    builder.start()
    big = bytes(3 * 4096)
    builder.add(KEYS.chunk_id(big), 0, big, 0, len(big))
    data, entries = builder.finish()
    assert entries.ids() == [KEYS.chunk_id(big)] and len(data) > len(big)
    data.release()
    left.release()
