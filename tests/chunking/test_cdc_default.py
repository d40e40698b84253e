"""The content-defined chunker with its real default parameters, and its pinned boundaries."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from strongroom.chunking import ContentChunker, cdc
from strongroom.chunking.cdc import MIB

from ._support import ShortReader, lengths, seeded_bytes, small_chunker

# Boundaries are part of dedup behaviour: if these change, old and new backups share fewer
# chunks.  They were cross-checked against fastcdc's pure-Python reference implementation.
GOLDEN_DEFAULT = [
    457611, 1154799, 901557, 1061671, 1182426, 1012508, 2111059, 294258, 981629, 1063366,
    1163898, 1099410, 981731, 682594, 1056904, 1747357, 1983501, 1282554, 740773, 776908,
    1271029, 310531, 459865, 824541, 1400264, 1536845, 666948, 1094765, 720446, 2047524,
    774750, 513095, 197315,
]  # fmt: skip
GOLDEN_SMALL = [
    135, 178, 209, 349, 236, 511, 81, 169, 205, 262, 177, 213, 253, 273, 100, 90, 180, 103,
    311, 141, 349, 265, 167, 225, 204, 170, 333, 115, 184, 234, 128, 202, 114, 214, 137, 634,
    210, 131,
]  # fmt: skip


@pytest.fixture(scope="module")
def data() -> bytes:
    return seeded_bytes(2024, 32 * MIB)


@pytest.fixture(scope="module")
def one_shot(data: bytes) -> list[tuple[int, int]]:
    return ContentChunker().chunk_bytes(data)


def test_default_boundaries_are_pinned(one_shot: list[tuple[int, int]]) -> None:
    assert lengths(one_shot) == GOLDEN_DEFAULT


def test_small_boundaries_are_pinned() -> None:
    assert lengths(small_chunker().chunk_bytes(seeded_bytes(7, 8192))) == GOLDEN_SMALL


def test_default_sizes(one_shot: list[tuple[int, int]]) -> None:
    sizes = lengths(one_shot)
    assert all(256 * 1024 <= n <= 4 * MIB for n in sizes[:-1])
    assert 0.5 * MIB < sum(sizes) / len(sizes) < 2 * MIB


@pytest.mark.parametrize("buffer_size", [8 * MIB, 8 * MIB + 12345, None])
def test_default_streaming_matches_one_shot(
    data: bytes, one_shot: list[tuple[int, int]], buffer_size: int | None
) -> None:
    chunker = ContentChunker(buffer_size=buffer_size)
    reader = ShortReader(data, [999_983, 65_536, 3 * MIB + 1, 1])
    views = chunker.chunk_file(reader, copy=False)
    assert [len(view) for view in views] == lengths(one_shot)


def test_stream_from_path_and_fd(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "blob"
    path.write_bytes(data[: 9 * MIB + 7])
    expected = lengths(ContentChunker().chunk_bytes(data[: 9 * MIB + 7]))
    chunker = ContentChunker(buffer_size=8 * MIB)
    with path.open("rb") as f:
        assert [len(c) for c in chunker.chunk_file(f)] == expected
    fd = os.open(path, os.O_RDONLY)
    try:
        assert [len(c) for c in chunker.chunk_file(fd)] == expected
        os.fstat(fd)  # the chunker does not close a caller's descriptor
    finally:
        os.close(fd)


def test_chunk_file_copies_are_independent(data: bytes) -> None:
    chunks = list(ContentChunker(buffer_size=8 * MIB).chunk_file(io.BytesIO(data)))
    assert all(isinstance(c, bytes) for c in chunks)
    assert b"".join(chunks) == data


def test_uses_a_compiled_scan(data: bytes) -> None:
    """The package's own GIL-free scan (test_gearcut.py), else fastcdc's compiled one."""
    implementation = vars(cdc)["_fastcdc_compiled"]
    if cdc._gearcut is None:
        assert implementation.__module__ == "fastcdc.fastcdc_cy"
        assert type(implementation).__name__ == "cython_function_or_method"
    else:
        assert implementation is None  # not even loaded
    chunker = ContentChunker()
    best = min(_timed(lambda: chunker.chunk_bytes(data)) for _ in range(3))
    # The compiled path does ~2.5 GB/s, the pure-Python one ~15 MB/s.
    assert len(data) / best > 150e6


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start
