"""Shared helpers for the chunking tests."""

from __future__ import annotations

import hashlib
from itertools import cycle

from strongroom.chunking import CDCParams, ContentChunker

SMALL = CDCParams(min_size=64, avg_size=256, max_size=1024)
"""The smallest parameters fastcdc accepts: many chunks from little data."""


def seeded_bytes(seed: int, size: int) -> bytes:
    """Pseudo-random bytes that are identical on every platform and Python version."""
    return hashlib.shake_256(b"strongroom-chunking:%d" % seed).digest(size)


def small_chunker(buffer_size: int = 2 * SMALL.max_size) -> ContentChunker:
    return ContentChunker(SMALL, buffer_size=buffer_size)


def lengths(chunks: list[tuple[int, int]]) -> list[int]:
    return [length for _, length in chunks]


class ShortReader:
    """A file-like object whose reads return at most the next size from ``read_sizes``."""

    def __init__(self, data: bytes, read_sizes: list[int]) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._sizes = cycle(read_sizes)
        self.calls = 0

    def readinto(self, buffer: memoryview, /) -> int:
        self.calls += 1
        count = min(next(self._sizes), len(buffer), len(self._data) - self._pos)
        buffer[:count] = self._data[self._pos : self._pos + count]
        self._pos += count
        return count
