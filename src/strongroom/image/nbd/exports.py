"""What the NBD server serves: the :class:`Export` protocol and two implementations.

An export is a fixed-size byte range.  ``read`` returns consecutive pieces covering the range,
each either data or a :class:`Hole` (reads as zeroes), so a sparse source (a file with holes,
a recovery point with zero chunks) costs neither disk reads nor wire bytes: the server turns
holes into NBD_REPLY_TYPE_OFFSET_HOLE chunks.  Exports are shared by every connection, so
implementations must be thread-safe.  Failures are raised as ``OSError`` (the server maps the
errno onto the wire) or any :class:`~strongroom.errors.StrongroomError` (sent as EIO).
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Protocol

from strongroom.image.nbd.protocol import BASE_ALLOCATION, STATE_HOLE, STATE_ZERO, Extent
from strongroom.records import dataclass

__all__ = ["Export", "FileExport", "Hole", "MemoryExport", "ReadPiece"]

_FALLOC_FL_KEEP_SIZE: Final = 0x01
_FALLOC_FL_PUNCH_HOLE: Final = 0x02
_FALLOC_FL_ZERO_RANGE: Final = 0x10
_ZERO_WRITE: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Hole:
    """``length`` bytes that read as zeroes."""

    length: int


ReadPiece = bytes | bytearray | memoryview | Hole


class Export(Protocol):
    """A block device the server can serve.  Offsets and lengths are already bounds-checked
    by the server, and write methods are only called when ``read_only`` is false."""

    @property
    def size(self) -> int: ...

    @property
    def read_only(self) -> bool: ...

    def meta_contexts(self) -> Sequence[str]:
        """Metadata contexts ``block_status`` understands, normally incl. ``base:allocation``."""
        ...

    def read(self, offset: int, length: int) -> Sequence[ReadPiece]:
        """Consecutive pieces exactly covering ``[offset, offset + length)``."""
        ...

    def write(self, offset: int, data: memoryview) -> None: ...

    def write_zeroes(self, offset: int, length: int, *, punch_hole: bool) -> None:
        """Zero the range; ``punch_hole`` allows deallocating it."""
        ...

    def trim(self, offset: int, length: int) -> None:
        """Advisory discard; contents of the range are unspecified afterwards."""
        ...

    def flush(self) -> None: ...

    def block_status(self, context: str, offset: int, length: int) -> Sequence[Extent]:
        """Consecutive extents from ``offset``: may stop short of ``length``, never empty."""
        ...


def _fallocate_function() -> Callable[[int, int, int, int], int] | None:
    """libc ``fallocate`` for punching holes; ``os`` only exposes posix_fallocate."""
    try:
        func = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    func.restype = ctypes.c_int
    return func


_fallocate = _fallocate_function()


def _try_fallocate(fd: int, mode: int, offset: int, length: int) -> bool:
    """True if the kernel did it; False if unsupported here (caller falls back)."""
    if _fallocate is None or _fallocate(fd, mode, offset, length) == 0:
        return _fallocate is not None
    code = ctypes.get_errno()
    if code in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(code, os.strerror(code))


class FileExport:
    """A raw image file (or block device) served with pread/pwrite.

    Holes come from ``SEEK_DATA``/``SEEK_HOLE``; trim and write-zeroes punch or zero ranges
    with ``fallocate`` where the filesystem supports it.  The size is fixed at open time.
    """

    def __init__(self, path: str | os.PathLike[str], read_only: bool = True) -> None:
        self.path = Path(path)
        self._read_only = read_only
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC
        self._fd = os.open(self.path, flags)
        self._size = os.lseek(self._fd, 0, os.SEEK_END)  # works for block devices too
        self._can_seek_data = True

    @property
    def size(self) -> int:
        return self._size

    @property
    def read_only(self) -> bool:
        return self._read_only

    def meta_contexts(self) -> Sequence[str]:
        return (BASE_ALLOCATION,)

    def _segments(self, offset: int, length: int) -> list[tuple[int, int, bool]]:
        """(offset, length, is_hole) runs covering the range, from SEEK_DATA/SEEK_HOLE."""
        end = offset + length
        runs: list[tuple[int, int, bool]] = []
        while offset < end:
            if not self._can_seek_data:
                return [*runs, (offset, end - offset, False)]
            try:
                data = os.lseek(self._fd, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                    self._can_seek_data = False  # e.g. some block devices: all data
                    continue
                if exc.errno != errno.ENXIO:  # ENXIO: only a hole remains up to EOF
                    raise
                data = end
            if data > offset:
                runs.append((offset, min(data, end) - offset, True))
                offset = min(data, end)
                continue
            hole = min(os.lseek(self._fd, offset, os.SEEK_HOLE), end)
            runs.append((offset, hole - offset, False))
            offset = hole
        return runs

    def read(self, offset: int, length: int) -> Sequence[ReadPiece]:
        pieces: list[ReadPiece] = []
        for start, n, is_hole in self._segments(offset, length):
            if is_hole:
                pieces.append(Hole(n))
                continue
            data = os.pread(self._fd, n, start)
            if len(data) != n:
                raise OSError(errno.EIO, f"short read at {start} in {self.path}")
            pieces.append(data)
        return pieces

    def write(self, offset: int, data: memoryview) -> None:
        while data:
            n = os.pwrite(self._fd, data, offset)
            data, offset = data[n:], offset + n

    def write_zeroes(self, offset: int, length: int, *, punch_hole: bool) -> None:
        mode = _FALLOC_FL_PUNCH_HOLE if punch_hole else _FALLOC_FL_ZERO_RANGE
        if _try_fallocate(self._fd, mode | _FALLOC_FL_KEEP_SIZE, offset, length):
            return
        zeros = memoryview(bytes(min(length, _ZERO_WRITE)))
        while length > 0:
            n = min(length, len(zeros))
            self.write(offset, zeros[:n])
            offset, length = offset + n, length - n

    def trim(self, offset: int, length: int) -> None:
        # Advisory: where holes cannot be punched, leaving the data is a valid trim.
        _try_fallocate(self._fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length)

    def flush(self) -> None:
        os.fsync(self._fd)

    def block_status(self, context: str, offset: int, length: int) -> Sequence[Extent]:
        if context != BASE_ALLOCATION:
            raise OSError(errno.EINVAL, f"unknown meta context {context!r}")
        return [
            Extent(start, n, STATE_HOLE | STATE_ZERO if is_hole else 0)
            for start, n, is_hole in self._segments(offset, length)
        ]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileExport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MemoryExport:
    """A sparse in-memory export for tests: blocks never written (or trimmed) are holes.

    It also offers the ``x-strongroom:dirty`` context (flag 1 = block written since
    creation or the last :meth:`clear_dirty`), so tests can exercise an export-provided
    metadata context the way qemu's dirty bitmaps work.
    """

    DIRTY_CONTEXT: Final = "x-strongroom:dirty"

    def __init__(self, size: int, *, read_only: bool = False, block_size: int = 64 * 1024) -> None:
        self._size = size
        self._read_only = read_only
        self.block_size = block_size
        self._blocks: dict[int, bytearray] = {}
        self._dirty: set[int] = set()
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._size

    @property
    def read_only(self) -> bool:
        return self._read_only

    def meta_contexts(self) -> Sequence[str]:
        return (BASE_ALLOCATION, self.DIRTY_CONTEXT)

    def _runs(self, offset: int, length: int) -> list[tuple[int, int, int]]:
        """(block index, start inside block, length) pieces of a range."""
        runs, end, bs = [], offset + length, self.block_size
        while offset < end:
            index, start = divmod(offset, bs)
            n = min(bs - start, end - offset)
            runs.append((index, start, n))
            offset += n
        return runs

    def read(self, offset: int, length: int) -> Sequence[ReadPiece]:
        pieces: list[ReadPiece] = []
        with self._lock:
            for index, start, n in self._runs(offset, length):
                block = self._blocks.get(index)
                last = pieces[-1] if pieces else None
                if block is None and isinstance(last, Hole):
                    pieces[-1] = Hole(last.length + n)  # merge holes: fewer wire chunks
                else:
                    pieces.append(Hole(n) if block is None else bytes(block[start : start + n]))
        return pieces

    def write(self, offset: int, data: memoryview) -> None:
        with self._lock:
            pos = 0
            for index, start, n in self._runs(offset, len(data)):
                block = self._blocks.setdefault(index, bytearray(self.block_size))
                block[start : start + n] = data[pos : pos + n]
                self._dirty.add(index)
                pos += n

    def write_zeroes(self, offset: int, length: int, *, punch_hole: bool) -> None:
        with self._lock:
            for index, start, n in self._runs(offset, length):
                self._dirty.add(index)
                if punch_hole and n == self.block_size:
                    self._blocks.pop(index, None)
                elif not punch_hole or index in self._blocks:
                    block = self._blocks.setdefault(index, bytearray(self.block_size))
                    block[start : start + n] = bytes(n)

    def trim(self, offset: int, length: int) -> None:
        self.write_zeroes(offset, length, punch_hole=True)

    def flush(self) -> None:
        pass

    def clear_dirty(self) -> None:
        with self._lock:
            self._dirty.clear()

    def block_status(self, context: str, offset: int, length: int) -> Sequence[Extent]:
        if context not in self.meta_contexts():
            raise OSError(errno.EINVAL, f"unknown meta context {context!r}")
        extents: list[Extent] = []
        length = min(length, 4096 * self.block_size)  # answering less keeps replies cheap
        with self._lock:
            for index, _, n in self._runs(offset, length):
                if context == BASE_ALLOCATION:
                    flags = 0 if index in self._blocks else STATE_HOLE | STATE_ZERO
                else:
                    flags = 1 if index in self._dirty else 0
                if extents and extents[-1].flags == flags:
                    last = extents[-1]
                    extents[-1] = Extent(last.offset, last.length + n, flags)
                else:
                    extents.append(Extent(offset, n, flags))
                offset += n
        return extents
