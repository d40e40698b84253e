"""The index's rows (vault/indexrows.py): keys sorted in plain Python, with numpy and by the
compiled sort (_keysort.c) are the same keys and find the same rows, batch after batch; the
columns grow in place; entry records are whole."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.vault import _keysort
from strongroom.vault.entries import Entries
from strongroom.vault.index import ChunkIndex
from strongroom.vault.indexrows import RowStore

# ids that often share their first 32 bits (a key's top half) and some that do not
_ids = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from([bytes(4), b"\xff" * 4, b"ab\x00z", b"\x80\x00\x00\x01"]),
    st.binary(min_size=28, max_size=28),
) | st.binary(min_size=32, max_size=32)
_batches = st.lists(st.lists(_ids, min_size=1, max_size=30), min_size=1, max_size=6)


def _records(ids: list[bytes], first: int) -> bytes:
    rows = [(cid, 1, 2, 0, first + i, 10 * i, 20 * i) for i, cid in enumerate(ids)]
    return Entries.of(rows).data


def _store(batches: list[list[bytes]], vector: bool | None) -> RowStore:
    store = RowStore(vector)
    n = 0
    for pack, ids in enumerate(batches):
        store.append(_records(ids, n), array("I", [pack]) * len(ids))
        store.sort()  # keys for this batch merge with the sorted ones before
        n += len(ids)
    return store


@given(_batches, st.lists(_ids, max_size=10))
@settings(max_examples=80, deadline=None)
def test_python_and_numpy_keys_find_the_same_rows(
    batches: list[list[bytes]], strangers: list[bytes]
) -> None:
    plain, vector = _store(batches, False), _store(batches, True)
    flat = [cid for ids in batches for cid in ids]
    first_row: dict[bytes, int] = {}
    for row, cid in enumerate(flat):
        first_row.setdefault(cid, row)
    for cid in [*flat, *strangers]:
        found = plain.find(cid)
        assert found == vector.find(cid)
        if cid in first_row:
            assert found >= 0 and plain.record(found)[0] == cid
            assert plain.record(found) == vector.record(found)
        else:
            assert found == -1
    assert plain.key_array().tolist() == vector.key_array().tolist()
    assert plain.key_array().tolist() == sorted(plain.key_array().tolist())
    packs = [pack for pack, ids in enumerate(batches) for _ in ids]
    assert [plain.pack(r) for r in range(len(flat))] == packs


@given(_batches)
@settings(max_examples=80, deadline=None)
def test_the_compiled_sort_gives_the_python_keys(batches: list[list[bytes]]) -> None:
    """The default store (vector None) sorts with _keysort.c, which the package's build makes
    and CI has; its keys are the plain Python sort's, batch after batch, without numpy."""
    compiled, plain = _store(batches, None), _store(batches, False)
    assert compiled.key_array().tolist() == plain.key_array().tolist()
    flat = [cid for ids in batches for cid in ids]
    assert [compiled.find(cid) for cid in flat] == [plain.find(cid) for cid in flat]


def test_the_compiled_sort_checks_its_bounds() -> None:
    rows, keys = bytearray(48 * 4), bytearray(8 * 4)
    for start, n in ((0, 5), (3, 2), (-1, 2)):
        with pytest.raises(ValueError, match=r"rows out of range|fewer than n rows"):
            _keysort.sort_keys(rows, keys, start, n)
    with pytest.raises(TypeError):
        _keysort.sort_keys(rows, bytes(32), 0, 4)  # type: ignore[arg-type]  # read-only keys
    _keysort.sort_keys(rows, keys, 0, 4)
    assert array("Q", keys).tolist() == [0, 1, 2, 3]  # equal ids: ordered by row


@given(_batches, st.lists(_ids, max_size=12), st.booleans())
@settings(max_examples=80, deadline=None)
def test_the_compiled_batch_lookup_finds_what_find_finds(
    batches: list[list[bytes]], strangers: list[bytes], vector: bool
) -> None:
    """``unfound`` (one call into _keysort.find_rows) names exactly the ids ``find`` does not
    find, in order, whichever way the keys were sorted; ids sharing their first 32 bits with
    stored ones included."""
    store = _store(batches, vector)
    flat = [cid for ids in batches for cid in ids]
    asked = [*strangers, *flat[::2], *strangers[::-1]]
    assert store.unfound(asked) == [i for i, c in enumerate(asked) if store.find(c) < 0]
    assert store.unfound(flat) == []
    assert RowStore(None).unfound(asked) == list(range(len(asked)))  # nothing keyed


def test_the_compiled_batch_lookup_checks_its_input() -> None:
    rows, keys = bytearray(48 * 2), bytearray(8 * 2)
    _keysort.sort_keys(rows, keys, 0, 2)
    assert _keysort.find_rows(rows, keys, 2, bytes(32) + b"\x01" * 32) == [1]
    with pytest.raises(ValueError, match="fewer than n rows"):
        _keysort.find_rows(rows, keys, 3, bytes(32))
    with pytest.raises(ValueError, match="32 bytes each"):
        _keysort.find_rows(rows, keys, 2, bytes(31))
    keys[:8] = array("Q", [5]).tobytes()  # a key naming a row past n: never read, not found
    assert _keysort.find_rows(rows, keys, 1, bytes(32)) == [0]


def test_a_column_view_alive_stops_growth_instead_of_dangling() -> None:
    store = RowStore(vector=True)
    store.append(_records([b"a" * 32], 0), array("I", [0]))
    store.sort()
    view = store.entry_array()
    with pytest.raises(BufferError):
        store.append(_records([b"b" * 32] * 2000, 1), array("I", [0]) * 2000)
    assert store.n == 1 and bytes(view[0]["id"]) == b"a" * 32
    assert store.find(b"a" * 32) == 0  # what it held is intact
    del view
    store.append(_records([b"b" * 32] * 2000, 1), array("I", [0]) * 2000)
    assert store.n == 2001


def test_loading_in_several_rounds_keeps_every_entry_findable() -> None:
    """An index loaded, then given more objects (a backup's workers' adopted), then packs a
    writer added: lookups see all of them, with either way of sorting."""
    for vector in (False, True):
        index = ChunkIndex(vector=vector)
        ids = [bytes([i]) * 32 for i in range(1, 40)]
        for n, cid in enumerate(ids[:20]):
            index.add_pack(bytes([n]) * 32, b"s", Entries(_records([cid], n)), bulk=True)
        index.finish_bulk()
        for n, cid in enumerate(ids[20:30], 20):
            index.add_pack(bytes([n]) * 32, b"s", Entries(_records([cid], n)), bulk=True)
        index.finish_bulk()
        for n, cid in enumerate(ids[30:], 30):
            index.add_pack(bytes([n]) * 32, b"s", Entries(_records([cid], n)))
        for n, cid in enumerate(ids):
            entry = index.lookup(cid)
            assert entry is not None and (entry.pack, entry.offset) == (bytes([n]) * 32, n)
        assert index.rows == len(ids)  # the writer's entries merged into the rows
        assert all(cid in index for cid in ids) and b"\x00" * 32 not in index


def test_entries_are_whole_records() -> None:
    with pytest.raises(ValueError, match="whole 48-byte entries"):
        Entries(b"x" * 47)
    rows = [(b"i" * 32, 1, 3, 0, 7, 8, 9), (b"j" * 32, 0, 0, 0, 2**32 - 1, 0, 1)]
    entries = Entries.of(rows)
    assert len(entries) == 2 and list(entries.rows()) == rows
    assert entries.ids() == [b"i" * 32, b"j" * 32]
    assert entries.array()["offset"].tolist() == [7, 2**32 - 1]
