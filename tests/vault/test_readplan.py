"""Read plans: the vault's places (one int per chunk) keep the whole entry and sort in the
packs' order, from freshly written (recent) rows and from loaded (sorted) rows alike."""

from __future__ import annotations

import pytest

from strongroom.vault import NOT_INDEXED, Vault
from strongroom.vault.entries import Entries
from strongroom.vault.index import ChunkIndex, IndexEntry
from strongroom.vault.reader import ChunkReader

PACKS = [b"a" * 32, b"b" * 32]
# (pack, chunk id, offset, length, raw, type, flags): extremes of every field
ROWS = [
    (1, b"\x01" * 32, 0xFFFF_FFF0, 0xFFFF_FFFF, 0xFFFF_FFFE, 2, 1),
    (1, b"\x02" * 32, 40, 100, 90, 1, 0),
    (0, b"\x03" * 32, 5000, 10, 10, 1, 15),  # an earlier pack, a later offset
]


def _index(bulk: bool) -> ChunkIndex:
    index = ChunkIndex()
    for pos, pack in enumerate(PACKS):
        rows = [r for r in ROWS if r[0] == pos]
        entries = Entries.of(
            (cid, ctype, flags, 0, off, length, raw)
            for _, cid, off, length, raw, ctype, flags in rows
        )
        index.add_pack(pack, b"s" * 16, entries, bulk=bulk)
    if bulk:
        index.finish_bulk()
    return index


@pytest.mark.parametrize("bulk", [False, True], ids=["recent", "loaded"])
def test_places_keep_the_entry_and_sort_in_pack_order(bulk: bool) -> None:
    index = _index(bulk)
    reader = ChunkReader(None, None, index)  # type: ignore[arg-type]  # only places used
    want = [IndexEntry(PACKS[p], off, n, raw, t, f) for p, _, off, n, raw, t, f in ROWS]
    places = [reader.place(r[1]) for r in ROWS]
    assert [reader.located_at(r[1], p) for r, p in zip(ROWS, places, strict=True)] == [
        (r[1], e) for r, e in zip(ROWS, want, strict=True)
    ]
    assert [index.lookup(r[1]) for r in ROWS] == want
    unknown = reader.place(b"\x09" * 32)
    assert unknown == NOT_INDEXED and reader.located_at(b"x", unknown) == (b"x", None)
    assert reader.located_at(b"x", -1) == (b"x", None)  # an engine's own "nothing to read"
    assert min(places) >= 0
    assert sorted([unknown, *places]) == [places[2], places[1], places[0], unknown]


def test_vault_read_plan_reads_what_it_located(local_vault: Vault) -> None:
    vault = local_vault
    writer = vault.writer()
    datas = [bytes([i]) * (1000 + i) for i in range(20)]
    ids = [writer.put(d).chunk_id for d in datas]
    writer.flush()
    located = [vault.located_at(cid, vault.place_of(cid)) for cid in ids]
    assert located == vault.locate(ids)
    assert [e.raw for _, e in located if e is not None] == [len(d) for d in datas]
    assert list(vault.read_planned(located)) == datas
    assert list(vault.read_chunks(ids)) == datas
    assert not vault.missing_chunks(ids) and vault.missing_chunks([*ids, b"z" * 32]) == {b"z" * 32}
    assert not vault.unstored(ids)
