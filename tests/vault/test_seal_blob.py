"""``_gcm.seal_blob`` (a pack blob and its entry in one compiled call) writes the bytes that
``PackBuilder.add``'s Python steps write (nonce, additional data, AES-256-GCM through the
``cryptography`` package, the entry record), refuses bad arguments with a clear error and
leaves the buffer's other bytes alone; a pack built either way reads back."""

from __future__ import annotations

import mmap
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.vault import aead
from strongroom.vault._gcm import seal_blob
from strongroom.vault.crypto import VaultKeys
from strongroom.vault.entries import ENTRY, Entries
from strongroom.vault.pack import BLOB_OVERHEAD, PackBuilder, blob_aad, read_pack_header

KEYS = VaultKeys.from_master(b"\x07" * 32)
ENCRYPT_INTO = aead.cryptography()[1]

blobs = st.lists(
    st.tuples(
        st.binary(min_size=32, max_size=32),  # chunk id
        st.integers(0, 255),  # type
        st.integers(0, 255),  # flags
        st.integers(0, 2**32 - 1),  # raw length
        st.binary(max_size=3000) | st.integers(60_000, 70_000).map(os.urandom),  # payload
    ),
    max_size=6,
)


def _python_seal(
    key: bytes,
    number: int,
    blob: tuple[bytes, int, int, int, bytes],
    out: bytearray,
    offset: int,
    entries: bytearray,
    base: int,
) -> int:
    cid, ctype, flags, raw, payload = blob
    nonce = number.to_bytes(12, "little")
    out[offset : offset + 12] = nonce
    ENCRYPT_INTO(key, nonce, payload, blob_aad(cid, ctype, flags, raw), out, offset + 12)
    n = len(payload) + BLOB_OVERHEAD
    entries += ENTRY.pack(cid, ctype, flags, 0, base + offset, n, raw)
    return offset + n


@given(st.binary(min_size=32, max_size=32), st.integers(0, 2**64 - 1), blobs, st.integers(0, 2**20))
@settings(max_examples=150, deadline=None)
def test_the_same_bytes_as_the_python_steps(
    key: bytes, first: int, items: list[tuple[bytes, int, int, int, bytes]], base: int
) -> None:
    size = 64 + sum(len(b[4]) + BLOB_OVERHEAD for b in items)
    ours, theirs = bytearray(os.urandom(size)), bytearray(size)
    theirs[:] = ours  # the bytes around the blobs must stay as they were
    e_ours, e_theirs = bytearray(b"x" * 48), bytearray(b"x" * 48)
    at_ours = at_theirs = 5
    for i, blob in enumerate(items):
        number = (first + i) % 2**64
        cid, ctype, flags, raw, payload = blob
        at_ours = seal_blob(
            key, number, cid, ctype, flags, raw, payload, ours, at_ours, e_ours, base
        )
        at_theirs = _python_seal(key, number, blob, theirs, at_theirs, e_theirs, base)
    assert at_ours == at_theirs
    assert ours == theirs
    assert e_ours == e_theirs


@given(blobs)
@settings(max_examples=40, deadline=None)
def test_a_pack_built_either_way_reads_back(
    items: list[tuple[bytes, int, int, int, bytes]],
) -> None:
    packs = []
    for compiled in (True, False):
        builder = PackBuilder(KEYS, 1024)
        builder.start()
        assert builder._seal is not None  # this build has the compiled path
        if not compiled:
            builder._seal = None
        for cid, ctype, flags, raw, payload in items:
            builder.add(cid, ctype, payload, flags, raw)
        view, entries = builder.finish()
        packs.append((bytes(view), entries))
    for whole, entries in packs:
        header = read_pack_header(KEYS, whole, "pack")
        assert header.entries == entries
        assert [r[0] for r in entries.rows()] == [b[0] for b in items]
    # the same blobs at the same places: only the salt (and so the key) differs
    assert [r[1:] for r in packs[0][1].rows()] == [r[1:] for r in packs[1][1].rows()]


def test_it_writes_into_an_anonymous_map_as_the_builder_does() -> None:
    out = mmap.mmap(-1, 4096)
    entries = bytearray()
    end = seal_blob(b"k" * 32, 3, b"i" * 32, 1, 1, 9, b"payload", out, 100, entries, 7)
    assert end == 100 + 7 + BLOB_OVERHEAD
    assert out[100:112] == (3).to_bytes(12, "little")
    assert Entries(bytes(entries)).rows().__next__() == (b"i" * 32, 1, 1, 0, 107, 35, 9)


@pytest.mark.parametrize(
    ("change", "error", "says"),
    [
        ({0: b"short"}, ValueError, "32 bytes"),
        ({2: b"short"}, ValueError, "chunk id"),
        ({9: b"not a bytearray"}, TypeError, "bytearray"),
        ({8: 4090}, ValueError, "no room"),
        ({8: -1}, ValueError, "no room"),
        ({3: 256}, OverflowError, "type"),
        ({4: -1}, OverflowError, None),
        ({5: 2**32}, OverflowError, "raw length"),
        ({10: 2**32 - 10, 8: 100}, OverflowError, "32-bit"),
        ({1: 2**64}, OverflowError, None),
        ({6: 12345}, TypeError, None),
        ({7: b"read-only"}, (TypeError, BufferError), None),
    ],
)
def test_bad_arguments_are_refused_and_nothing_is_written(
    change: dict[int, object],
    error: type[Exception] | tuple[type[Exception], ...],
    says: str | None,
) -> None:
    out = bytearray(4096)
    entries = bytearray()
    args: list[Any] = [b"k" * 32, 0, b"i" * 32, 1, 0, 5, b"hello", out, 0, entries, 0]
    for index, value in change.items():
        args[index] = value
    with pytest.raises(error, match=says):
        seal_blob(*args)
    assert out == bytearray(4096)
    assert entries == bytearray()


def test_it_takes_eleven_arguments() -> None:
    with pytest.raises(TypeError, match="11 arguments"):
        seal_blob(b"k" * 32)  # type: ignore[call-arg]
