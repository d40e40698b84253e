"""The chunk index's rows: entry records in arrival order, and sorted keys that find them.

Each row is the 48-byte entry record exactly as an index object or pack header stores it
(:mod:`strongroom.vault.entries`), so loading a pack's entries is one copy, beside its pack
number (4 bytes).  A sorted array of 64-bit keys finds rows: the top 32 bits of a key are the
first 32 bits of the chunk id (big-endian), the low 32 bits the row number.  Keys sort in
place, so loading needs no second copy: 60 bytes per chunk at rest.

The columns live in private anonymous memory maps grown in place: on Linux ``mmap.resize`` is
``mremap``, which moves page mappings and never copies, so the process never holds an old and a
new copy of a column (the C heap's ``realloc`` copies below glibc's mmap threshold and may keep
the old copy resident).  Elsewhere it falls back to one copy.  Resizing while a view of a
column is alive raises ``BufferError`` instead of leaving the view dangling.

Lookups bisect the keys in plain Python, many at once in C (``_keysort.find_rows``, where
built: :meth:`RowStore.unfound`).  Keys are built and sorted by ``_keysort.c`` where
the package's build compiled it; else in plain Python for fewer than :data:`VECTOR_FROM` rows
and by numpy above, since numpy costs 13 MiB and 0.05 CPU s to import (issue 19) and that is
what a Python sort of 65,536 keys costs.  The column views that prune and repair work with
use numpy.
"""

from __future__ import annotations

import mmap
import sys
from array import array
from bisect import bisect_left
from typing import TYPE_CHECKING, Literal

from strongroom.anonmem import anonymous_map
from strongroom.vault.entries import ENTRY, ENTRY_SIZE, Row

if TYPE_CHECKING:
    import numpy as np

try:  # the compiled sort (setup.py); without it, Python or numpy give the same order
    from strongroom.vault import _keysort
except ImportError:  # pragma: no cover - a build without a C compiler
    _keysort = None  # type: ignore[assignment]

VECTOR_FROM = 1 << 16
_KEY_BLOCK = 1 << 16  # rows per step when numpy builds keys: bounds the temporaries
_WORDS = ENTRY_SIZE // 4  # a record in 32-bit words: the id's first word starts each
_LOW32 = 0xFFFFFFFF


class _Column:
    """``width``-byte items in a growable map; ``view`` is a memoryview of it as ``fmt``."""

    def __init__(self, width: int, fmt: Literal["B", "I", "Q"]) -> None:
        self.width, self.fmt = width, fmt
        self.map: mmap.mmap | None = None
        self.view = memoryview(b"").cast(fmt)

    @property
    def capacity(self) -> int:
        return 0 if self.map is None else len(self.map) // self.width

    def resize(self, capacity: int) -> None:
        """Grow or shrink to ``capacity`` items (``BufferError``, unchanged, if a view of the
        map other than :attr:`view` is alive)."""
        self.view.release()
        try:
            self._remap(capacity * self.width)
        finally:
            self.view = memoryview(b"" if self.map is None else self.map).cast(self.fmt)

    def _remap(self, nbytes: int) -> None:
        if nbytes == 0:
            if self.map is not None:
                self.map.close()
            self.map = None
        elif self.map is None:
            self.map = anonymous_map(nbytes)
        else:
            try:
                self.map.resize(nbytes)
            except (SystemError, OSError):  # no mremap on this platform: copy once
                grown = anonymous_map(nbytes)
                keep = min(nbytes, len(self.map))
                grown[:keep] = self.map[:keep]
                self.map.close()
                self.map = grown


class RowStore:
    """Rows and their keys; not thread-safe (the index serializes access).

    ``vector`` chooses how keys are sorted: True numpy, False plain Python, None (the default)
    the compiled sort, or where it was not built numpy from :data:`VECTOR_FROM` rows or when
    something else loaded numpy already.  All give the same order.
    """

    def __init__(self, vector: bool | None = None) -> None:
        self.vector = vector
        self._rows = _Column(ENTRY_SIZE, "B")
        self._packs = _Column(4, "I")
        self._keys = _Column(8, "Q")
        self.n = 0  # rows
        self.keyed = 0  # rows [0, keyed) have keys, and the keys are sorted
        self.peak_bytes = 0  # the most the columns ever held together, slack included

    # --- adding ---------------------------------------------------------------------------

    def append(self, records: bytes, packs: array[int]) -> None:
        """Add whole entry records; ``packs`` holds each one's pack number."""
        start, count = self.n, len(records) // ENTRY_SIZE
        assert len(packs) == count and len(records) == count * ENTRY_SIZE
        need = start + count
        if need > self._rows.capacity:
            # Grow by 1/16: growing remaps pages (no copy), so small steps cost little, and
            # the slack stays within the 64 B/chunk budget (it is trimmed after loading).
            capacity = max(need, self._rows.capacity * 17 // 16 + 1024)
            self._resize_rows(capacity)
        self._rows.view[start * ENTRY_SIZE : need * ENTRY_SIZE] = records
        self._packs.view[start:need] = packs
        self.n = need

    def _resize_rows(self, capacity: int) -> None:
        self._rows.resize(capacity)
        self._packs.resize(capacity)
        self._note_peak()

    def _note_peak(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self.mapped_bytes()[0])

    def trim(self) -> None:
        """Give back the growth slack: at rest the columns hold exactly the rows."""
        if self._rows.capacity > self.n:
            self._resize_rows(self.n)

    def sort(self) -> None:
        """Key the rows added since the last sort and sort all keys."""
        start, n = self.keyed, self.n
        if start == n:
            return
        self._keys.resize(n)
        self._note_peak()
        vector = self.vector
        if vector is None and _keysort is not None:
            assert self._rows.map is not None and self._keys.map is not None
            _keysort.sort_keys(self._rows.map, self._keys.map, start, n)
        elif vector or (vector is None and (n >= VECTOR_FROM or "numpy" in sys.modules)):
            self._sort_numpy(start, n)
        else:
            self._sort_python(start, n)
        self.keyed = n

    def _sort_python(self, start: int, n: int) -> None:
        words = self._rows.view[start * ENTRY_SIZE : n * ENTRY_SIZE].cast("I")
        tops = array("I", words[::_WORDS])
        words.release()
        if sys.byteorder == "little":
            tops.byteswap()  # the id's first four bytes as a big-endian number
        keys = [top << 32 | row for row, top in enumerate(tops, start)]
        keys += self._keys.view[:start].tolist()
        keys.sort()
        self._keys.view[:n] = array("Q", keys)

    def _sort_numpy(self, start: int, n: int) -> None:
        import numpy as np

        assert self._rows.map is not None and self._keys.map is not None
        words = np.frombuffer(self._rows.map, dtype=">u4", count=n * _WORDS)
        keys = np.frombuffer(self._keys.map, dtype=np.uint64, count=n)
        for lo in range(start, n, _KEY_BLOCK):
            hi = min(n, lo + _KEY_BLOCK)
            part = keys[lo:hi]
            part[:] = words[lo * _WORDS : hi * _WORDS : _WORDS]
            part <<= np.uint64(32)
            part |= np.arange(lo, hi, dtype=np.uint64)
        keys.sort()
        del words, keys  # no view may outlive this call: the maps must stay resizable

    # --- reading --------------------------------------------------------------------------

    def unfound(self, ids: list[bytes]) -> list[int]:
        """The positions in ``ids`` of those no keyed row holds, in order: one compiled call
        where the build made it (a backup asks this for each folder's kept chunks), else
        :meth:`find` for each."""
        n = self.keyed
        rows, keys = self._rows.map, self._keys.map
        # hasattr: a build of _keysort from before find_rows (an older checkout's) still loads
        if n == 0 or rows is None or keys is None or not hasattr(_keysort, "find_rows"):
            return [i for i, c in enumerate(ids) if self.find(c) < 0]
        return _keysort.find_rows(rows, keys, n, b"".join(ids))

    def find(self, chunk_id: bytes) -> int:
        """The row of ``chunk_id`` among the keyed rows, -1 if none."""
        n = self.keyed
        if n == 0:
            return -1
        top = int.from_bytes(chunk_id[:4], "big")
        keys, rows = self._keys.view, self._rows.map
        assert rows is not None
        i = bisect_left(keys, top << 32, 0, n)
        while i < n:
            key = keys[i]
            if key >> 32 != top:
                break
            row = key & _LOW32
            at = row * ENTRY_SIZE
            if rows[at : at + 32] == chunk_id:
                return row
            i += 1
        return -1

    def record(self, row: int) -> Row:
        assert self._rows.map is not None
        return ENTRY.unpack_from(self._rows.map, row * ENTRY_SIZE)

    def pack(self, row: int) -> int:
        return int(self._packs.view[row])

    def nbytes(self) -> int:
        """Bytes held per row by the columns at rest (the budget the spec promises)."""
        return (ENTRY_SIZE + 4 + 8) * self.n

    def mapped_bytes(self) -> tuple[int, int]:
        """(bytes the columns hold now, the most they ever held): capacity, slack included."""
        now = self._rows.capacity * (ENTRY_SIZE + 4) + self._keys.capacity * 8
        return now, max(now, self.peak_bytes)

    # --- numpy views, for bulk work (valid until the next row is added) -------------------

    def entry_array(self) -> np.ndarray:
        from strongroom.vault.entryarrays import ENTRY_DTYPE

        return self._array(self._rows.map, ENTRY_DTYPE, self.n)

    def pack_array(self) -> np.ndarray:
        return self._array(self._packs.map, "u4", self.n)

    def key_array(self) -> np.ndarray:
        return self._array(self._keys.map, "u8", self.keyed)

    @staticmethod
    def _array(buf: mmap.mmap | None, dtype: object, count: int) -> np.ndarray:
        import numpy as np

        if buf is None or count == 0:
            return np.empty(0, dtype=dtype)  # type: ignore[call-overload, no-any-return]
        view: np.ndarray = np.frombuffer(buf, dtype=dtype, count=count)  # type: ignore[call-overload]
        view.flags.writeable = False
        return view
