"""numpy's view of entry records (:mod:`strongroom.vault.entries`), for bulk work only.

Prune, repair and check work on whole columns of the index at once; everything a backup or
a restore does goes through :mod:`struct` instead, so importing this module (and numpy) is
left to the commands that need it.
"""

from __future__ import annotations

import numpy as np

from strongroom.vault.entries import ENTRY_SIZE, Entries

ENTRY_DTYPE = np.dtype(
    [
        ("id", "V32"),
        ("type", "u1"),
        ("flags", "u1"),
        ("reserved", "<u2"),
        ("offset", "<u4"),
        ("length", "<u4"),
        ("raw", "<u4"),
    ]
)
assert ENTRY_DTYPE.itemsize == ENTRY_SIZE


def entry_array(data: bytes) -> np.ndarray:
    """``data``'s entries as a structured array (read-only: a view of the bytes)."""
    return np.frombuffer(data, dtype=ENTRY_DTYPE)


def entries_of(array: np.ndarray) -> Entries:
    """The :class:`Entries` of a structured array of :data:`ENTRY_DTYPE` records."""
    return Entries(np.ascontiguousarray(array, dtype=ENTRY_DTYPE).tobytes())
