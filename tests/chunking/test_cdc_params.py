"""Parameter validation of the content-defined chunker."""

from __future__ import annotations

import io

import pytest

from strongroom.chunking import CDCParams, ContentChunker
from strongroom.errors import ChunkingError


def test_defaults() -> None:
    params = CDCParams()
    assert (params.min_size, params.avg_size, params.max_size) == (2**18, 2**20, 2**22)
    assert ContentChunker().buffer_size == 8 * 2**20  # two max-size chunks


@pytest.mark.parametrize(
    ("min_size", "avg_size", "max_size"),
    [
        (32, 256, 1024),  # below fastcdc's minimum
        (64, 128, 1024),
        (64, 256, 512),
        (1024, 1024, 4096),  # not strictly increasing
        (4096, 2048, 8192),
        (64, 4096, 2048),
        (100, 256, 1024),  # not powers of two
        (64, 300, 1024),
        (64, 256, 1000),
        (0, 256, 1024),
        (-64, 256, 1024),
        (64, 256, 2**31),  # above fastcdc's maximum
    ],
)
def test_invalid_params(min_size: int, avg_size: int, max_size: int) -> None:
    with pytest.raises(ChunkingError):
        CDCParams(min_size, avg_size, max_size)


@pytest.mark.parametrize("bad", [True, 1024.0, "1024", None])
def test_non_int_params(bad: object) -> None:
    with pytest.raises(ChunkingError):
        CDCParams(64, 256, bad)  # type: ignore[arg-type]


def test_buffer_must_hold_two_max_chunks() -> None:
    params = CDCParams(64, 256, 1024)
    assert ContentChunker(params, buffer_size=2048).buffer_size == 2048
    with pytest.raises(ChunkingError):
        ContentChunker(params, buffer_size=2047)
    assert ContentChunker(CDCParams(max_size=2**26)).buffer_size == 2**27


def test_bad_sources() -> None:
    chunker = ContentChunker()
    with pytest.raises(ChunkingError):
        list(chunker.chunk_file(b"bytes are not a file"))  # type: ignore[call-overload]
    with pytest.raises(ChunkingError):
        list(chunker.chunk_file(True))


class _WouldBlock:
    def readinto(self, buffer: memoryview, /) -> int | None:
        return None


def test_non_blocking_source_is_refused() -> None:
    with pytest.raises(ChunkingError):
        list(ContentChunker().chunk_file(_WouldBlock()))


def test_empty_inputs() -> None:
    chunker = ContentChunker()
    assert chunker.chunk_bytes(b"") == []
    assert list(chunker.chunk_file(io.BytesIO(b""))) == []


def test_non_byte_buffers() -> None:
    data = bytes(range(256)) * 64
    chunker = ContentChunker(CDCParams(64, 256, 1024))
    expected = chunker.chunk_bytes(data)
    assert chunker.chunk_bytes(memoryview(data).cast("Q")) == expected
    with pytest.raises(ChunkingError):
        chunker.chunk_bytes(memoryview(data)[::2])
