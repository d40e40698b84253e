"""Reading many ranges in one call: the batch read a served vault offers.

Through a server every request costs about a millisecond of CPU on each side (routing,
authorization, the audit row) whatever its size, so a restore that fetched each coalesced
span with its own request spent more on requests than on bytes.  A backend that can fetch
several ranges in one round trip says so with :class:`ReadsRanges`; :func:`get_ranges` falls
back to one :meth:`~strongroom.storage.backend.Backend.get_range` per range for the others.

The wire form (``POST /v1/vaults/V/read``) is shared by the client and the server: the answer
is each range's bytes, in the order asked, each after its length as 8 bytes big-endian (a
range past an object's end comes back short, as from ``get_range``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from strongroom.errors import TransientStorageError
from strongroom.storage.backend import Backend

Range = tuple[str, int, int]
"""An object's name, an offset in it and a length."""

MAX_RANGES = 1024
"""The most ranges one batch read may ask for (the server refuses more with 400)."""
MAX_BYTES = 32 << 20
"""The most bytes one batch read may ask for in all: the server holds the answer in memory."""
_LEN = 8


@runtime_checkable
class ReadsRanges(Protocol):
    """A backend that fetches several ranges in one round trip."""

    def get_ranges(self, ranges: Sequence[Range]) -> list[memoryview]: ...


def get_ranges(backend: Backend, ranges: Sequence[Range]) -> list[memoryview]:
    """The bytes of each range of ``ranges``: in one call where ``backend`` can, else one
    ranged read each."""
    if isinstance(backend, ReadsRanges):
        return backend.get_ranges(ranges)
    return [memoryview(backend.get_range(*r)) for r in ranges]


def batches(ranges: Sequence[Range]) -> list[Sequence[Range]]:
    """``ranges`` cut into consecutive groups within :data:`MAX_RANGES` and
    :data:`MAX_BYTES` (a range larger than that alone is a group of its own)."""
    groups: list[Sequence[Range]] = []
    start = total = 0
    for i, (_, _, length) in enumerate(ranges):
        if i > start and (i - start >= MAX_RANGES or total + length > MAX_BYTES):
            groups.append(ranges[start:i])
            start, total = i, 0
        total += length
    if start < len(ranges):
        groups.append(ranges[start:])
    return groups


def frame(parts: Sequence[bytes]) -> bytes:
    """The answer to a batch read: each part after its length (one copy of the bytes)."""
    pieces: list[bytes] = []
    for part in parts:
        pieces += (len(part).to_bytes(_LEN, "big"), part)
    return b"".join(pieces)


def unframe(body: bytes, lengths: Sequence[int]) -> list[memoryview]:
    """The parts of a batch read's answer, each at most as long as asked; anything else
    (a part too long, too few parts, bytes left over) is a garbled answer, worth a retry."""
    view, at, parts = memoryview(body), 0, []
    for asked in lengths:
        if at + _LEN > len(view):
            raise TransientStorageError("batch read: the server's answer is cut short")
        size = int.from_bytes(view[at : at + _LEN], "big")
        at += _LEN
        if size > asked or at + size > len(view):
            raise TransientStorageError("batch read: the server's answer is garbled")
        parts.append(view[at : at + size])
        at += size
    if at != len(view):
        raise TransientStorageError("batch read: the server's answer has bytes left over")
    return parts


__all__ = [
    "MAX_BYTES",
    "MAX_RANGES",
    "Range",
    "ReadsRanges",
    "batches",
    "frame",
    "get_ranges",
    "unframe",
]
