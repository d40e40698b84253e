"""NBD exports over a recovery point: read-only from the vault, or with a local overlay.

* :class:`PointExport` serves one disk of a point through a :class:`ChunkCache`: zero chunks
  read as holes (no bytes on the wire) and are reported as ``HOLE|ZERO`` by block status;
  a chunk the vault cannot deliver fails the request with EIO (never zeros).
* :class:`OverlayExport` makes any export writable without touching it: written blocks
  (64 KiB granularity) live in a sparse local file of the export's size, a bitmap says which
  blocks the overlay holds, and everything else is read from the base.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np

from strongroom.image.chunkcache import ChunkCache
from strongroom.image.nbd.exports import FileExport, Hole, ReadPiece
from strongroom.image.nbd.protocol import BASE_ALLOCATION, STATE_HOLE, STATE_ZERO, Extent

__all__ = ["OVERLAY_BLOCK", "OverlayExport", "PointExport"]

OVERLAY_BLOCK: Final = 64 * 1024
_MAX_STATUS_CHUNKS: Final = 1 << 16


class PointExport:
    """One disk of a recovery point, read-only."""

    def __init__(self, cache: ChunkCache) -> None:
        self.cache = cache

    @property
    def size(self) -> int:
        return self.cache.size

    @property
    def read_only(self) -> bool:
        return True

    def meta_contexts(self) -> Sequence[str]:
        return (BASE_ALLOCATION,)

    def read(self, offset: int, length: int) -> Sequence[ReadPiece]:
        pieces: list[ReadPiece] = []
        cs, end = self.cache.chunk_size, offset + length
        while offset < end:
            index, at = divmod(offset, cs)
            n = min(cs - at, end - offset)
            data = self.cache.chunk(index)
            if data is None:
                last = pieces[-1] if pieces else None
                if isinstance(last, Hole):
                    pieces[-1] = Hole(last.length + n)
                else:
                    pieces.append(Hole(n))
            else:
                pieces.append(memoryview(data)[at : at + n])
            offset += n
        return pieces

    def block_status(self, context: str, offset: int, length: int) -> Sequence[Extent]:
        if context != BASE_ALLOCATION:
            raise OSError(errno.EINVAL, f"unknown meta context {context!r}")
        extents: list[Extent] = []
        cs, end = self.cache.chunk_size, offset + length
        for _ in range(_MAX_STATUS_CHUNKS):
            if offset >= end:
                break
            index, at = divmod(offset, cs)
            n = min(cs - at, end - offset)
            flags = STATE_HOLE | STATE_ZERO if self.cache.is_zero(index) else 0
            if extents and extents[-1].flags == flags:
                last = extents[-1]
                extents[-1] = Extent(last.offset, last.length + n, flags)
            else:
                extents.append(Extent(offset, n, flags))
            offset += n
        return extents

    def write(self, offset: int, data: memoryview) -> None:
        raise OSError(errno.EPERM, "export is read-only")

    def write_zeroes(self, offset: int, length: int, *, punch_hole: bool) -> None:
        raise OSError(errno.EPERM, "export is read-only")

    def trim(self, offset: int, length: int) -> None:
        raise OSError(errno.EPERM, "export is read-only")

    def flush(self) -> None:
        pass


def _join(pieces: Sequence[ReadPiece]) -> bytes:
    return b"".join(bytes(x.length) if isinstance(x, Hole) else bytes(x) for x in pieces)


class OverlayExport:
    """``base`` made writable: writes go to a new sparse file at ``path``, never to ``base``."""

    def __init__(self, base: PointExport, path: Path) -> None:
        self.base, self.path = base, path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, base.size)
        finally:
            os.close(fd)
        self.file = FileExport(path, read_only=False)
        blocks = -(-base.size // OVERLAY_BLOCK)
        self._dirty = np.zeros(blocks, dtype=bool)
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self.base.size

    @property
    def read_only(self) -> bool:
        return False

    def meta_contexts(self) -> Sequence[str]:
        return (BASE_ALLOCATION,)

    def close(self) -> None:
        self.file.close()

    def _runs(self, offset: int, length: int) -> list[tuple[int, int, bool]]:
        """(offset, length, in overlay) runs covering the range."""
        runs: list[tuple[int, int, bool]] = []
        end = offset + length
        while offset < end:
            block = offset // OVERLAY_BLOCK
            n = min((block + 1) * OVERLAY_BLOCK, end) - offset
            dirty = bool(self._dirty[block])
            if runs and runs[-1][2] == dirty:
                runs[-1] = (runs[-1][0], runs[-1][1] + n, dirty)
            else:
                runs.append((offset, n, dirty))
            offset += n
        return runs

    def read(self, offset: int, length: int) -> Sequence[ReadPiece]:
        with self._lock:
            runs = self._runs(offset, length)
        pieces: list[ReadPiece] = []
        for start, n, dirty in runs:
            pieces += self.file.read(start, n) if dirty else self.base.read(start, n)
        return pieces

    def _block_range(self, offset: int, length: int) -> range:
        return range(offset // OVERLAY_BLOCK, (offset + length - 1) // OVERLAY_BLOCK + 1)

    def _fill_edges(self, offset: int, length: int) -> None:
        """Copy the base's content of partly written blocks not yet in the overlay."""
        for block in {offset // OVERLAY_BLOCK, (offset + length - 1) // OVERLAY_BLOCK}:
            if self._dirty[block]:
                continue
            start = block * OVERLAY_BLOCK
            n = min(OVERLAY_BLOCK, self.size - start)
            if start >= offset and start + n <= offset + length:
                continue  # wholly overwritten
            self.file.write(start, memoryview(_join(self.base.read(start, n))))

    def write(self, offset: int, data: memoryview) -> None:
        if not len(data):
            return
        with self._lock:
            self._fill_edges(offset, len(data))
            self.file.write(offset, data)
            blocks = self._block_range(offset, len(data))
            self._dirty[blocks.start : blocks.stop] = True

    def write_zeroes(self, offset: int, length: int, *, punch_hole: bool) -> None:
        if not length:
            return
        with self._lock:
            self._fill_edges(offset, length)
            self.file.write_zeroes(offset, length, punch_hole=punch_hole)
            blocks = self._block_range(offset, length)
            self._dirty[blocks.start : blocks.stop] = True

    def trim(self, offset: int, length: int) -> None:
        self.write_zeroes(offset, length, punch_hole=True)

    def flush(self) -> None:
        self.file.flush()

    def block_status(self, context: str, offset: int, length: int) -> Sequence[Extent]:
        with self._lock:
            runs = self._runs(offset, length)
        first_start, first_n, dirty = runs[0]
        if dirty:  # written blocks: data (conservative, always correct)
            return [Extent(first_start, first_n, 0)]
        return self.base.block_status(context, first_start, first_n)

    @property
    def bytes_written(self) -> int:
        return int(self._dirty.sum()) * OVERLAY_BLOCK
