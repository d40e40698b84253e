"""A chunk's compression: zstd at the vault's level, not tried on data that will not shrink.

A chunk is stored compressed only where zstd makes it at most 97 % of its size; otherwise its
raw bytes are stored (docs/format.md §6, flag bit 0).  Finding that out by compressing the
whole chunk is the costliest way: zstd's match finder runs over every byte of random or
already-compressed data only for the result to be thrown away.  On the live-VM benchmark's
disk (1,134 chunks of 1 MiB, 502 of them random) that was 0.72 of the 4.0 CPU seconds zstd
spent, and the image backup is CPU-bound there (docs/benchmarks.md, "Session 46").

So a chunk of at least :data:`PROBE_MIN` bytes is first probed: :data:`SAMPLES` pieces of
:data:`SAMPLE` bytes, spread evenly over it, are compressed together (3 % of a 1 MiB chunk).
Only when that sample does not shrink to 97 % is the chunk stored raw without compressing it.
One compressible piece among the eight (text, zeros, a repeated page) makes the sample shrink,
and the whole chunk is compressed as before.  borg's ``auto`` compression decides the same way
with an lz4 pass; this reuses zstd on a sample instead.

What it can miss: a chunk whose sampled pieces are all random while the bytes between them
compress (say a random 64 KiB block repeated through the chunk, which no sample sees twice).
Such a chunk is stored raw: more space, never a wrong byte, since the raw form is always a
valid stored form.  On the benchmark's data sets (4 KiB-granular mixtures of zeros, random and
text, /usr, text of three compressibilities) the vaults grew by at most 0.33 % (/usr's).
"""

from __future__ import annotations

import threading

import zstandard

__all__ = ["MAX_RATIO", "PROBE_MIN", "SAMPLE", "SAMPLES", "ChunkCompressor"]

MAX_RATIO = 0.97
"""A chunk is stored compressed only when zstd makes it smaller than this share of it."""
PROBE_MIN = 64 << 10
"""Smaller chunks are compressed outright: the probe would be a good part of the work."""
SAMPLE = 4 << 10
SAMPLES = 8

Data = bytes | bytearray | memoryview


class ChunkCompressor:
    """zstd at one level for many threads (a compression context per thread)."""

    def __init__(self, level: int) -> None:
        self._level = level
        self._local = threading.local()

    def _context(self) -> zstandard.ZstdCompressor:
        cctx: zstandard.ZstdCompressor | None = getattr(self._local, "cctx", None)
        if cctx is None:
            cctx = self._local.cctx = zstandard.ZstdCompressor(level=self._level)
        return cctx

    def compress(self, data: Data) -> bytes | None:
        """The zstd frame of ``data``, or None where it should be stored raw."""
        cctx = self._context()
        n = len(data)
        if n >= PROBE_MIN and not _shrinks(cctx, _sample(memoryview(data), n)):
            return None
        packed: bytes = cctx.compress(data)
        return packed if len(packed) < n * MAX_RATIO else None


def _sample(view: memoryview, n: int) -> bytes:
    """:data:`SAMPLES` pieces of :data:`SAMPLE` bytes: the first at the start, the last at the
    end, the others evenly between."""
    last = n - SAMPLE
    starts = (i * last // (SAMPLES - 1) for i in range(SAMPLES))
    return b"".join(view[s : s + SAMPLE] for s in starts)


def _shrinks(cctx: zstandard.ZstdCompressor, sample: bytes) -> bool:
    return len(cctx.compress(sample)) < len(sample) * MAX_RATIO
