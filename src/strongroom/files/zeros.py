"""Chunks of zeros in a restore: written as allocation, not as data.

Zeros are much of what big files hold: a virtual disk's free space, a database's preallocated
pages, a log rotated by truncation.  A big file's restore allocates its extents before it
writes them (``storage.directio.reserve``, ``fallocate`` mode 0: the blocks are the file's,
and read as zeros until written), so a chunk of zeros in such a file needs no write at all:
the file ends up exactly as dense as with the write (nothing becomes a hole; a swap file stays
usable), with the same content, for no I/O.

Zeros inside a chunk of data (runs shorter than a chunk, or a run's ends) are skipped too, a
64 KiB block of the content at a time: blocks that size keep the writes around them large and
aligned, and looking at one costs a byte or two unless it is zeros.

A chunk of a big file once decoded to zeros is known by its id (the vault's keyed hash of its
content, which the decoding verified): later references to it (dedup makes every 4 MiB of
zeros the same chunk) are not read from the vault at all.  A small file's pieces are not
looked at (a restore of 50,000 of them would pay the test for nothing).  A file that cannot
skip the write (no reserved extents) gets the zeros from memory instead of from a read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from strongroom.errors import StrongroomError
from strongroom.vault import Located

# Compared against, and handed out in slices for a known chunk of zeros (never written to; its
# pages are the kernel's shared zero page until read, so it costs no memory).
_ZEROS = bytes(4 << 20)

# A chunk's bytes as a restore's reads give them, or why it could not be read
Fetched = bytes | memoryview | StrongroomError
# The granularity of zeros skipped inside a chunk, at content offsets that are its multiples.
BLOCK = 64 << 10


def is_zeros(data: bytes | memoryview) -> bool:
    """True if ``data`` is all zero bytes (and not empty).  Most data fails on its first or
    last byte; the rest is one ``memcmp`` (``bytes.startswith``), some 40 GB/s."""
    n = len(data)
    if not n or data[0] or data[-1]:
        return False
    if isinstance(data, memoryview) and data.obj is _ZEROS:
        return True
    return _ZEROS.startswith(data) if n <= len(_ZEROS) else data == bytes(n)


def data_runs(data: bytes | memoryview, pos: int) -> Iterator[tuple[int, int]]:
    """The ranges of ``data`` (found at ``pos`` of the content) left to write once its whole
    blocks of zeros (:data:`BLOCK`, aligned in the content) are taken out, in order."""
    n = len(data)
    at = -pos % BLOCK  # the first block boundary in data
    start = 0  # where the data not yet given out begins
    while at + BLOCK <= n:
        if not data[at] and not data[at + BLOCK - 1] and _ZEROS.startswith(data[at : at + BLOCK]):
            if at > start:
                yield start, at
            start = at + BLOCK
        at += BLOCK
    if start < n:
        yield start, n


def zeros(n: int) -> memoryview | bytes:
    """``n`` zero bytes, without a copy where the shared buffer is long enough."""
    return memoryview(_ZEROS)[:n] if n <= len(_ZEROS) else bytes(n)


class KnownZeros:
    """The ids of the chunks this restore has decoded to zeros (shared by a writer's threads:
    a set's add and lookup are atomic under the GIL)."""

    def __init__(self) -> None:
        self.ids: set[bytes] = set()

    def learn(self, chunk_id: bytes, data: bytes | memoryview) -> bool:
        """Whether ``data`` (the decoded chunk ``chunk_id``) is zeros; if so it is known from
        now on."""
        if not is_zeros(data):
            return False
        self.ids.add(chunk_id)
        return True

    def split(self, chunks: Sequence[Located]) -> list[bool] | None:
        """Which of ``chunks`` are known zeros (taken once: another thread may learn more
        while the caller reads the rest); None if none is."""
        ids = self.ids
        if not ids:
            return None
        known = [cid in ids and entry is not None for cid, entry in chunks]
        return known if any(known) else None


def merged(
    chunks: Sequence[Located], known: Sequence[bool], read: Iterator[Fetched]
) -> Iterator[Fetched]:
    """Each of ``chunks`` in order: zeros for a known one, else the next of ``read`` (the
    reads of the others, in order)."""
    for (_, entry), zero in zip(chunks, known, strict=True):
        if zero and entry is not None:
            yield zeros(entry.raw)
        else:
            yield next(read)
