"""Entry records: the 48 bytes that locate one blob, in pack headers and index objects.

    id (32) | type u8 | flags u8 | reserved u16 | offset u32 | length u32 | raw length u32

little-endian (``docs/format.md`` §6).  :class:`Entries` carries a run of them as the bytes
they are stored as.  Backups and restores read them with :mod:`struct` and copy whole runs
into the in-memory index, so those commands never load numpy (13 MiB and 0.05 CPU s per
process, issue 19); bulk work (prune, repair) asks for a numpy view with :meth:`array`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from strongroom.records import dataclass

if TYPE_CHECKING:
    import numpy as np

ENTRY = struct.Struct("<32sBBHIII")
ENTRY_SIZE = ENTRY.size
assert ENTRY_SIZE == 48

Row = tuple[bytes, int, int, int, int, int, int]
"""One entry unpacked: (id, type, flags, reserved, offset, length, raw length)."""


@dataclass(frozen=True, slots=True)
class Entries:
    """A run of entry records, e.g. one pack's."""

    data: bytes

    def __post_init__(self) -> None:
        if len(self.data) % ENTRY_SIZE:
            raise ValueError(f"{len(self.data)} bytes are not whole {ENTRY_SIZE}-byte entries")

    @classmethod
    def of(cls, rows: Iterable[Row]) -> Entries:
        return cls(b"".join([ENTRY.pack(*row) for row in rows]))

    def __len__(self) -> int:
        return len(self.data) // ENTRY_SIZE

    def rows(self) -> Iterator[Row]:
        return ENTRY.iter_unpack(self.data)

    def ids(self) -> list[bytes]:
        data = self.data
        return [data[i : i + 32] for i in range(0, len(data), ENTRY_SIZE)]

    def array(self) -> np.ndarray:
        """A read-only numpy view (:data:`~strongroom.vault.entryarrays.ENTRY_DTYPE`)."""
        from strongroom.vault.entryarrays import entry_array

        return entry_array(self.data)
