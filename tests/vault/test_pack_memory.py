"""A pack builder's memory: a pack of small files' chunks holds about 10,000 blobs, and
their entries are kept as the 48-byte records its header stores, not as a tuple of ints per
blob (about 280 bytes: 2.8 MiB a builder, in the backup's parent and in each worker); and a
builder waiting for its next pack holds none of its buffers' pages."""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import tracemalloc
from pathlib import Path

from strongroom.storage.local import LocalBackend
from strongroom.vault.config import VaultSettings
from strongroom.vault.crypto import VaultKeys
from strongroom.vault.entries import ENTRY_SIZE
from strongroom.vault.pack import PackBuilder, read_pack_header
from strongroom.vault.vault import Vault
from tests.constants import FAST_KDF

KEYS = VaultKeys.from_master(bytes(range(32)))
SMALL_PACKS = VaultSettings(pack_size=1 << 20)


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


def _resident_pages(buf: mmap.mmap) -> int:
    """How many of ``buf``'s pages are in memory: bit 63 ("present") of each page's entry in
    /proc/self/pagemap, the pages a process's RSS counts."""
    anchor = ctypes.c_char.from_buffer(buf)
    try:
        start = ctypes.addressof(anchor) // mmap.PAGESIZE
    finally:
        del anchor  # the export, so the map can close later
    pages = len(buf) // mmap.PAGESIZE
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(start * 8)
        entries = struct.unpack(f"<{pages}Q", f.read(pages * 8))
    return sum(e >> 63 for e in entries)


def _buffers(builder: PackBuilder) -> list[mmap.mmap]:
    spares = builder._spares.all() if builder._spares is not None else []
    return [builder._buf, *spares]


def test_an_idle_builder_gives_its_pages_back_and_builds_its_next_pack() -> None:
    builder = PackBuilder(KEYS, 8 << 20)
    for round_ in range(2):
        builder.start()
        blobs = [os.urandom(1 << 20) for _ in range(6)]
        for blob in blobs:
            builder.add(KEYS.chunk_id(blob), 0, blob, 0, len(blob))
        data, entries = builder.finish()
        pack = bytes(data)
        data.release()
        assert entries.ids() == [KEYS.chunk_id(b) for b in blobs]
        assert read_pack_header(KEYS, pack, "pack").entries.ids() == entries.ids()
        assert sum(_resident_pages(b) for b in _buffers(builder)) >= (6 << 20) // mmap.PAGESIZE
        builder.release_memory()
        assert sum(_resident_pages(b) for b in _buffers(builder)) == 0, round_


def test_a_writers_builders_hold_no_pages_between_packs(tmp_path: Path) -> None:
    """Streamed packs (the local backend): every builder that is not filling a pack has
    given its pages back, those of the one that wrote the last full pack too."""
    vault = Vault.init(LocalBackend(tmp_path / "v"), "pw", kdf=FAST_KDF, settings=SMALL_PACKS)
    writer = vault.writer()
    for i in range(40):  # 40 x 64 KiB of random bytes: packs of 1 MiB, five streamed windows
        writer.put(os.urandom(64 << 10) + b"%d" % i)
    writer.flush()
    assert writer.stats.packs >= 2
    resident = [sum(_resident_pages(m) for m in _buffers(b)) for b in writer._all_builders]
    writer.close()
    vault.close()
    assert resident == [0] * len(resident)
