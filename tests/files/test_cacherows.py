"""The files cache's folder rows (files/cacherows.py): records round-trip exactly, a body
that is not ours fails cleanly, the MAC covers the folder and every byte, and the compiled
decoder (files/_rowread.c) gives what the Python one gives."""

from __future__ import annotations

import os
import struct
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.files import _rowread
from strongroom.files.cacherows import (
    CacheEntry,
    CacheRow,
    body_mac,
    decode_body,
    decode_body_py,
    decode_xattrs,
    encode_record,
    prepare_dir,
)

_i64 = st.integers(-(2**63), 2**63 - 1)
_names = st.binary(min_size=1, max_size=300).filter(lambda n: b"/" not in n and b"\0" not in n)
_xattrs = st.lists(
    st.tuples(
        st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=20),
        st.binary(max_size=100),
    ),
    max_size=3,
).map(lambda pairs: tuple(sorted(dict(("user." + k, v) for k, v in pairs).items())))
_rows = st.builds(
    lambda name, ino, size, mt, ct, chunks, extents, flags, xattrs: (
        b"/some/folder",
        name,
        ino,
        size,
        mt,
        ct,
        chunks,
        extents,
        flags,
        xattrs,
    ),
    _names,
    st.integers(0, 2**64 - 1),
    _i64,
    _i64,
    _i64,
    st.lists(st.binary(min_size=32, max_size=32), max_size=5),
    st.none() | st.lists(st.tuples(_i64, _i64), max_size=4),
    st.integers(0, 2**31 - 1),
    _xattrs,
)


def _records(rows: list[CacheRow]) -> list[bytes]:
    return [encode_record(row) for row in rows]


@settings(max_examples=300, deadline=None)
@given(st.lists(_rows, max_size=8, unique_by=lambda r: r[1]))
def test_records_round_trip(rows: list[CacheRow]) -> None:
    key = os.urandom(32)
    folder, body, seen, mac = prepare_dir(key, b"/some/folder", [], _records(rows), 7)
    assert (folder, seen) == (b"/some/folder", 7) and mac == body_mac(key, folder, body)
    found = decode_body(body)
    assert list(found) == [r[1] for r in rows]
    for _, name, ino, size, mt, ct, chunks, extents, flags, xattrs in rows:
        e = found[name]
        assert (e.ino, e.size, e.mtime_ns, e.ctime_ns, e.chunks, e.flags, e.xattrs) == (
            ino,
            size,
            mt,
            ct,
            chunks,
            flags,
            xattrs,
        )
        pairs = cast("list[tuple[int, int]] | None", extents)
        assert e.extents == (None if pairs is None else [tuple(x) for x in pairs])
    # a folder written again from the records it kept is the same body
    kept = [found[r[1]].record for r in rows]
    assert prepare_dir(key, folder, kept, [], 7)[1] == body


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_a_body_that_is_not_ours_fails_cleanly(junk: bytes) -> None:
    try:
        found = decode_body(junk)
    except (ValueError, struct.error):
        return
    assert sum(len(e.record) for e in found.values()) <= len(junk)
    assert all(
        e.record in junk and len(e.chunks[0] if e.chunks else b"") in (0, 32)
        for e in found.values()
    )


@given(st.lists(_rows, min_size=1, max_size=4, unique_by=lambda r: r[1]), st.data())
@settings(max_examples=100, deadline=None)
def test_the_mac_covers_the_folder_and_every_byte(
    rows: list[CacheRow], data: st.DataObject
) -> None:
    key = os.urandom(32)
    folder, body, _, mac = prepare_dir(key, b"/a", [], _records(rows), 0)
    at = data.draw(st.integers(0, len(body) - 1))
    flipped = body[:at] + bytes([body[at] ^ 1]) + body[at + 1 :]
    assert body_mac(key, folder, flipped) != mac
    assert body_mac(key, b"/b", body) != mac
    assert body_mac(os.urandom(32), folder, body) != mac


def test_a_truncated_body_is_refused() -> None:
    row: CacheRow = (b"/f", b"name", 1, 2, 3, 4, [b"\1" * 32], None, 0, ())
    body = encode_record(row)
    for cut in (1, 10, len(body) - 1):
        with pytest.raises(ValueError):
            decode_body(body[:cut])


def _outcome(decode: object, body: bytes) -> object:
    try:
        return decode(body)  # type: ignore[operator]
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        return (type(exc), str(exc))


@settings(max_examples=300, deadline=None)
@given(st.lists(_rows, max_size=6), st.data())
def test_the_compiled_decoder_gives_what_python_gives(
    rows: list[CacheRow], data: st.DataObject
) -> None:
    """files/_rowread.c against decode_body_py: the same entries from a body (a name twice:
    the last wins), and the same error from one cut short or with a byte changed."""
    body = b"".join(_records(rows))
    assert _rowread.decode_body(body, CacheEntry, decode_xattrs) == decode_body_py(body)
    if body:
        at = data.draw(st.integers(0, len(body) - 1))
        edited = body[:at] + bytes([data.draw(st.integers(0, 255))]) + body[at + 1 :]
        for junk in (body[:at], edited):
            assert _outcome(decode_body, junk) == _outcome(decode_body_py, junk)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_the_compiled_decoder_fails_as_python_does(junk: bytes) -> None:
    assert _outcome(decode_body, junk) == _outcome(decode_body_py, junk)


class _Plain:
    """Fields that are not slots: the compiled decoder calls the type."""

    def __init__(self, *fields: object) -> None:
        self.fields = fields


def test_a_type_without_slots_is_called() -> None:
    body = encode_record((b"/d", b"f", 1, 2, 3, 4, [b"c" * 32], None, 5, ()))
    entry = _rowread.decode_body(body, _Plain, decode_xattrs)[b"f"]
    assert entry.fields == (1, 2, 3, 4, [b"c" * 32], None, 5, (), body)
    assert decode_body(body)[b"f"] == CacheEntry(1, 2, 3, 4, [b"c" * 32], None, 5, (), body)
