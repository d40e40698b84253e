"""Hypothesis properties of the on-disk format and the in-memory index."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.errors import IntegrityError
from strongroom.vault.crypto import VaultKeys
from strongroom.vault.entries import Entries
from strongroom.vault.envelope import MAGIC_INDEX, MAGIC_POINT, open_object, seal_object
from strongroom.vault.index import ChunkIndex, PackRecord, decode_index, encode_index
from strongroom.vault.pack import FLAG_ZSTD, BlobDecoder, PackBuilder, read_pack_header
from strongroom.vault.trees import decode_tree, encode_tree

KEYS = VaultKeys.from_master(bytes(range(32)))
VAULT_ID = b"v" * 16
ids = st.binary(min_size=32, max_size=32)
blobs = st.lists(st.binary(max_size=3000), max_size=12)


@given(blobs)
@settings(max_examples=60, deadline=None)
def test_pack_roundtrip(datas: list[bytes]) -> None:
    builder = PackBuilder(KEYS, 1024)
    builder.start()
    for d in datas:
        builder.add(KEYS.chunk_id(d), 0, d, 0, len(d))
    view, entries = builder.finish()
    data = bytes(view)
    view.release()
    contents = read_pack_header(KEYS, data, "p")
    assert contents.entries == entries
    cipher = KEYS.pack_cipher(contents.salt)
    dec = BlobDecoder(KEYS)
    for d, (cid, _, _, _, off, length, _) in zip(datas, contents.entries.rows(), strict=True):
        blob = data[off : off + length]
        assert dec.decode(cipher, blob, cid, 0, 0, len(d), "p") == d


@given(st.binary(min_size=1, max_size=2000), st.integers(0, 255), st.integers(1, 255))
@settings(max_examples=60, deadline=None)
def test_blob_cannot_be_read_as_another_type_or_id(data: bytes, pos: int, xor: int) -> None:
    builder = PackBuilder(KEYS, 64)
    builder.start()
    cid = KEYS.chunk_id(data)
    builder.add(cid, 0, data, 0, len(data))
    view, entries = builder.finish()
    _, _, _, _, off, length, _ = next(entries.rows())
    stored = bytearray(view[off : off + length])
    view.release()
    cipher = KEYS.pack_cipher(builder.salt)
    dec = BlobDecoder(KEYS)
    with pytest.raises(IntegrityError):
        dec.decode(cipher, stored, cid, 1, 0, len(data), "p")
    with pytest.raises(IntegrityError):
        dec.decode(cipher, stored, bytes(32), 0, 0, len(data), "p")
    with pytest.raises(IntegrityError):
        dec.decode(cipher, stored, cid, 0, FLAG_ZSTD, len(data), "p")
    stored[pos % len(stored)] ^= xor
    with pytest.raises(IntegrityError):
        dec.decode(cipher, stored, cid, 0, 0, len(data), "p")


def _entries(rows: list[tuple[bytes, int, int, int]]) -> Entries:
    return Entries.of((cid, 0, 0, 0, off, length, raw) for cid, off, length, raw in rows)


row = st.tuples(
    ids, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)
)


@given(
    st.lists(st.tuples(ids, ids, st.lists(row, max_size=8)), max_size=5), st.lists(ids, max_size=3)
)
@settings(max_examples=60, deadline=None)
def test_index_object_roundtrip(
    packs: list[tuple[bytes, bytes, list[tuple[bytes, int, int, int]]]], sup: list[bytes]
) -> None:
    records = [PackRecord(p, s, _entries(rows)) for p, s, rows in packs]
    plain = encode_index(records, sup)
    sealed = seal_object(MAGIC_INDEX, KEYS.index_key, VAULT_ID, plain)
    back, back_sup = decode_index(
        open_object(MAGIC_INDEX, KEYS.index_key, VAULT_ID, sealed, name="i"), "i"
    )
    assert back_sup == sup
    assert [(r.pack_id, r.salt, r.entries) for r in back] == [
        (r.pack_id, r.salt, r.entries) for r in records
    ]
    with pytest.raises(IntegrityError):
        open_object(MAGIC_POINT, KEYS.index_key, VAULT_ID, sealed, name="i")


@given(st.binary(max_size=400))
@settings(max_examples=100, deadline=None)
def test_truncated_index_plaintext_is_rejected_cleanly(plain: bytes) -> None:
    with contextlib.suppress(IntegrityError):
        decode_index(plain, "i")


@given(st.lists(ids, max_size=20), st.binary(max_size=200))
def test_tree_roundtrip(refs: list[bytes], body: bytes) -> None:
    assert decode_tree(encode_tree(refs, body)) == (refs, body)


@given(
    st.lists(st.tuples(ids, st.booleans()), max_size=300, unique_by=lambda t: t[0]),
    st.booleans(),
)
@settings(max_examples=40, deadline=None)
def test_chunk_index_matches_a_dict(items: list[tuple[bytes, bool]], vector: bool) -> None:
    index = ChunkIndex(vector=vector)
    model: dict[bytes, int] = {}
    for n, (cid, bulk) in enumerate(items):
        pack = n.to_bytes(32, "little")
        index.add_pack(pack, bytes(32), _entries([(cid, n, n + 1, n + 2)]), bulk=bulk)
        model[cid] = n
    index.finish_bulk()
    assert len(index) == len(model)
    for cid, n in model.items():
        e = index.lookup(cid)
        assert e is not None and (e.pack, e.offset, e.length, e.raw) == (
            n.to_bytes(32, "little"),
            n,
            n + 1,
            n + 2,
        )
    assert index.lookup(os.urandom(32)) is None
    assert {cid for cid, _ in index.iter_entries()} == set(model)


# ids that often share their first 32 bits (the sorted keys' top half), so the vectorized
# search meets runs of equal keys
_close_ids = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from([bytes(4), b"\xff" * 4, b"ab\x00z"]),
    st.binary(min_size=28, max_size=28),
)


@given(
    st.lists(st.tuples(_close_ids | ids, st.booleans()), max_size=200, unique_by=lambda t: t[0]),
    st.lists(_close_ids | ids, max_size=50),
    st.booleans(),
    st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_missing_agrees_with_membership(
    items: list[tuple[bytes, bool]], asked: list[bytes], settle: bool, vector: bool
) -> None:
    """One vectorized search for many ids says what a lookup of each says, with entries
    both loaded in bulk and recently added (not yet merged into the sorted arrays)."""
    index = ChunkIndex(vector=vector)
    for n, (cid, bulk) in enumerate(items):
        pack = n.to_bytes(32, "little")
        index.add_pack(pack, bytes(32), _entries([(cid, n, n + 1, n + 2)]), bulk=bulk)
    index.finish_bulk()
    if settle:
        assert index.rows == len(items)  # merges the recent ones into the arrays
    queries = [cid for cid, _ in items[::2]] + asked
    want = {cid for cid in queries if cid not in index}
    assert index.missing(queries) == want
    assert want.isdisjoint(cid for cid, _ in items)
