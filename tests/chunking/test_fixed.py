"""Properties of the fixed-size, offset-aligned chunker and of is_zero."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.chunking import FixedChunker, is_zero
from strongroom.errors import ChunkingError

chunk_sizes = st.integers(1, 4096) | st.sampled_from([512, 4096, 65536, 1 << 20])
sizes = st.integers(0, 1 << 22)


@given(chunk_sizes, st.data())
def test_bounds_cover_the_image_aligned(chunk_size: int, data: st.DataObject) -> None:
    total = data.draw(st.integers(0, 300 * chunk_size))
    chunker = FixedChunker(chunk_size)
    bounds = list(chunker.iter_bounds(total))
    assert len(bounds) == chunker.chunk_count(total)
    position = 0
    for index, (offset, length) in enumerate(bounds):
        assert offset == position == index * chunk_size
        assert chunker.chunk_bounds(index, total) == (offset, length)
        assert chunker.chunk_index(offset) == index
        assert 0 < length <= chunk_size
        assert length == chunk_size or index == len(bounds) - 1
        position += length
    assert position == total


def brute_force_range(chunk_size: int, offset: int, length: int) -> list[int]:
    last = (offset + length) // chunk_size + 2
    return [
        i
        for i in range(last)
        if max(i * chunk_size, offset) < min((i + 1) * chunk_size, offset + length)
    ]


@given(st.integers(1, 300), st.integers(0, 5000), st.integers(0, 5000))
def test_chunk_range_matches_brute_force(chunk_size: int, offset: int, length: int) -> None:
    got = FixedChunker(chunk_size).chunk_range(offset, length)
    assert isinstance(got, range)
    assert list(got) == brute_force_range(chunk_size, offset, length)


@given(chunk_sizes, sizes, st.data())
def test_chunk_range_covers_each_byte(chunk_size: int, total: int, data: st.DataObject) -> None:
    chunker = FixedChunker(chunk_size)
    byte = data.draw(st.integers(0, max(total - 1, 0)))
    assert list(chunker.chunk_range(byte, 1)) == [chunker.chunk_index(byte)]


@given(chunk_sizes, sizes, st.integers(-3, 3))
def test_chunk_bounds_rejects_out_of_range(chunk_size: int, total: int, delta: int) -> None:
    chunker = FixedChunker(chunk_size)
    index = chunker.chunk_count(total) + delta
    if 0 <= index < chunker.chunk_count(total):
        assert chunker.chunk_bounds(index, total)[0] == index * chunk_size
    else:
        with pytest.raises(ChunkingError):
            chunker.chunk_bounds(index, total)


@pytest.mark.parametrize("size", [0, -1, -4096, True, 1.5, "4096"])
def test_invalid_chunk_size(size: object) -> None:
    with pytest.raises(ChunkingError):
        FixedChunker(size)  # type: ignore[arg-type]


def test_negative_arguments() -> None:
    chunker = FixedChunker(4096)
    for call in (
        lambda: chunker.chunk_range(-1, 10),
        lambda: chunker.chunk_range(0, -1),
        lambda: chunker.chunk_index(-1),
        lambda: chunker.chunk_count(-1),
    ):
        with pytest.raises(ChunkingError):
            call()


buffer_sizes = st.integers(0, 5000) | st.sampled_from([1 << 20, (1 << 20) + 3, 3 * (1 << 20) + 5])


@settings(max_examples=200)
@given(buffer_sizes, st.data())
def test_is_zero_finds_a_single_non_zero_byte(size: int, data: st.DataObject) -> None:
    buf = bytearray(size)
    assert is_zero(buf) and is_zero(bytes(buf)) and is_zero(memoryview(buf))
    if size == 0:
        return
    where = data.draw(st.integers(0, size - 1))
    buf[where] = data.draw(st.integers(1, 255))
    assert not is_zero(buf)
    assert not is_zero(bytes(buf))
    assert not is_zero(memoryview(buf))
    assert is_zero(memoryview(buf)[:where])
    assert is_zero(memoryview(buf)[where + 1 :])


@given(st.binary(max_size=2000) | st.binary(max_size=2000).map(lambda b: bytes(len(b))))
def test_is_zero_matches_model(buf: bytes) -> None:
    assert is_zero(buf) == (buf.count(0) == len(buf))


def test_is_zero_other_formats() -> None:
    assert is_zero(memoryview(bytes(64)).cast("Q"))
    assert not is_zero(memoryview(bytes(63) + b"\x01").cast("Q"))
    with pytest.raises(ChunkingError):
        is_zero(memoryview(bytes(64))[::2])
