"""Content-defined chunking (CDC) of byte streams for the file engine.

Algorithm
---------
Boundaries are those of the ``fastcdc`` PyPI package (fastcdc-py 1.7): found by the package's
own GIL-free scan (``_gearcut.c``, with fastcdc-py's gear table) where it was built, else by
fastcdc's compiled Cython implementation ``fastcdc.fastcdc_cy.fastcdc_cy``; importing this
module fails if neither is there rather than silently using the pure-Python path (~200x
slower).

fastcdc-py implements a single algorithm: FastCDC as published in 2016 (Xia et al., USENIX
ATC '16) in the variant of ronomon/deduplication and fastcdc-rs v1 (the "ronomon" variant):

* gear hash ``h = (h >> 1) + GEAR[byte]`` on 32-bit integers, starting from ``h = 0`` at
  ``min_size`` bytes into each chunk (the first ``min_size`` bytes are skipped, not hashed);
* normalized chunking, level 1: with ``bits = log2(avg_size)``, the stricter mask
  ``2**(bits + 1) - 1`` applies up to ``avg_size - (min_size + ceil(min_size / 2))`` bytes
  into the chunk, the looser mask ``2**(bits - 1) - 1`` after that;
* a cut is placed after the first byte where ``h & mask == 0``, or at ``max_size``, or at the
  end of the input.

The FastCDC "2020" variant (rolling two bytes per step) is *not* available in fastcdc-py; this
module does not use it.  Default parameters: ``min_size`` 256 KiB, ``avg_size`` 1 MiB,
``max_size`` 4 MiB.

Chunk boundaries are part of the deduplication behaviour (changing the algorithm or the
parameters makes old and new backups share fewer chunks), not of the format's correctness:
every chunk is stored and addressed by its content.  :data:`ALGORITHM` names the algorithm so
that callers can record it next to the parameters.  ``tests/chunking`` pins golden boundaries
to catch an upgrade of fastcdc that would move them.

Streaming
---------
:meth:`ContentChunker.chunk_file` reads into one reused buffer and carries the unfinished tail
(the bytes after the last final cut) across reads, so its boundaries are identical to those of
:meth:`ContentChunker.chunk_bytes` on the whole content.  A cut is final once it lies before
the end of the buffered data, the chunk reached ``max_size``, or the input ended.

The compiled fastcdc holds the GIL while it scans.  This module therefore only finds
boundaries: it does no hashing, compression or I/O other than reading the source, so callers
can chunk in one stage and hash/compress (which release the GIL) in worker threads.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import mmap
import re
from collections.abc import Callable, Generator, Iterator
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Final, Literal, Protocol, TypeAlias, overload

from strongroom.chunking._buffers import BytesLike, byte_view
from strongroom.errors import ChunkingError
from strongroom.records import dataclass


def _gear_table() -> list[int]:
    """fastcdc-py's gear table, read from its source: importing ``fastcdc`` runs its package
    ``__init__``, which loads its command line (click: 10 ms of every files command)."""
    spec = importlib.util.find_spec("fastcdc")  # finds the package without running it
    folder = spec.submodule_search_locations if spec is not None else None
    if folder:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = (Path(next(iter(folder))) / "fastcdc_py.py").read_text("utf-8")
            found = re.search(r"^GEAR = \[([0-9,\s]*)\]", text, re.MULTILINE)
            table = [int(n) for n in found.group(1).split(",") if n.strip()] if found else []
            if len(table) == 256 and all(0 <= n < 1 << 32 for n in table):
                return table
    from fastcdc.fastcdc_py import GEAR  # a layout this parser does not know

    return list(GEAR)


def _load_gearcut() -> ModuleType | None:
    """The same scan without the GIL (_gearcut.c, built by the package's setup.py where a
    compiler is found): two threads then chunk two files on two cores.  fastcdc's scan stays
    the fallback, and the reference the tests compare the cuts with."""
    try:
        from strongroom.chunking import _gearcut
    except ImportError:  # pragma: no cover - built by setup.py wherever the test set-up runs
        return None
    _gearcut.set_gear(_gear_table())
    return _gearcut


def _load_fastcdc() -> Callable[..., Iterator[Any]]:
    try:
        from fastcdc.fastcdc_cy import fastcdc_cy
    except ImportError as exc:  # pragma: no cover - depends on the installed wheel
        raise ImportError(
            "strongroom needs the compiled fastcdc extension (fastcdc.fastcdc_cy); "
            "reinstall fastcdc from a binary wheel"
        ) from exc
    return fastcdc_cy  # type: ignore[no-any-return]


_gearcut = _load_gearcut()
_fastcdc_compiled = _load_fastcdc() if _gearcut is None else None

__all__ = [
    "ALGORITHM",
    "DEFAULT_BUFFER_SIZE",
    "CDCParams",
    "ChunkSource",
    "ContentChunker",
    "Readable",
]

ALGORITHM: Final = "fastcdc2016-ronomon-nc1"

KIB: Final = 1024
MIB: Final = 1024 * KIB
# Two chunks of the largest size, the least that lets every cut be found (8 MiB at the default
# 4 MiB max_size).  Each file being chunked holds its buffer's touched pages: at 16 MiB a backup
# of /usr (parent and worker, three files at a time) peaked at 195 MiB summed RSS, at 8 MiB 167,
# and two big files at once 110 -> 92 MiB; refilling twice as often cost nothing measurable
# (docs/benchmarks.md, "Session 15").
DEFAULT_BUFFER_SIZE: Final = 8 * MIB
_MAX_SPARE_BUFFERS: Final = 2

# fastcdc's own limits (it asserts on them).
_MIN_LIMITS: Final = (64, 64 * MIB)
_AVG_LIMITS: Final = (256, 256 * MIB)
_MAX_LIMITS: Final = (1024, 1024 * MIB)


class Readable(Protocol):
    """A binary file-like object that can read into a caller's buffer."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


ChunkSource: TypeAlias = Readable | int
"""A readable binary file object, or an open file descriptor (not closed by the chunker)."""


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def _check_size(name: str, value: object, limits: tuple[int, int]) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ChunkingError(f"{name} must be an int, not {type(value).__name__}")
    if not _is_power_of_two(value):
        raise ChunkingError(f"{name} must be a power of two, got {value}")
    low, high = limits
    if not low <= value <= high:
        raise ChunkingError(f"{name} must be within [{low}, {high}], got {value}")


@dataclass(frozen=True, slots=True)
class CDCParams:
    """Chunk size parameters: powers of two with ``min_size < avg_size < max_size``."""

    min_size: int = 256 * KIB
    avg_size: int = 1 * MIB
    max_size: int = 4 * MIB

    def __post_init__(self) -> None:
        _check_size("min_size", self.min_size, _MIN_LIMITS)
        _check_size("avg_size", self.avg_size, _AVG_LIMITS)
        _check_size("max_size", self.max_size, _MAX_LIMITS)
        if not self.min_size < self.avg_size < self.max_size:
            raise ChunkingError(
                "chunk sizes must satisfy min_size < avg_size < max_size, got "
                f"{self.min_size}, {self.avg_size}, {self.max_size}"
            )


@lru_cache(maxsize=8)
def _scan_args(p: CDCParams) -> tuple[int, int, int]:
    """fastcdc's center size and its two masks for ``p`` (as fastcdc-py derives them)."""
    offset = min(p.min_size + -(-p.min_size // 2), p.avg_size)
    center = min(p.avg_size - offset, p.max_size)
    bits = p.avg_size.bit_length() - 1  # a power of two: log2 exactly
    return center, (1 << (bits + 1)) - 1, (1 << (bits - 1)) - 1


def _as_reader(source: ChunkSource) -> Readable:
    if isinstance(source, bool):
        raise ChunkingError("cannot read from a bool")
    if isinstance(source, int):
        return io.FileIO(source, "r", closefd=False)
    if not hasattr(source, "readinto"):
        raise ChunkingError(f"cannot read from {type(source).__name__}: no readinto()")
    return source


def _fill(reader: Readable, view: memoryview, filled: int) -> tuple[int, bool]:
    """Read until ``view`` is full or the source ends; return (filled, at_eof)."""
    size = len(view)
    while filled < size:
        count = reader.readinto(view[filled:])
        if count is None:
            raise ChunkingError("source would block: non-blocking files are not supported")
        if count == 0:
            return filled, True
        filled += count
    return filled, False


class ContentChunker:
    """Splits byte streams at content-defined boundaries (see the module docstring)."""

    __slots__ = ("_spare_buffers", "buffer_size", "params")

    def __init__(self, params: CDCParams | None = None, *, buffer_size: int | None = None) -> None:
        self.params = params if params is not None else CDCParams()
        floor = 2 * self.params.max_size
        if buffer_size is None:
            buffer_size = max(DEFAULT_BUFFER_SIZE, 2 * self.params.max_size)
        if not isinstance(buffer_size, int) or buffer_size < floor:
            raise ChunkingError(f"buffer_size must be an int of at least 2 * max_size = {floor}")
        self.buffer_size = buffer_size
        # Read buffers kept between calls, so chunking many small files does not allocate
        # a new buffer per file.  list.pop/append are atomic, so concurrent chunk_file calls
        # (threads or interleaved iterators) each get their own buffer.
        self._spare_buffers: list[mmap.mmap] = []

    def _cuts(self, view: memoryview) -> Iterator[tuple[int, int]]:
        """Yield (offset, length) of each chunk of ``view``, the last one ending at its end."""
        p = self.params
        if _gearcut is None:
            assert _fastcdc_compiled is not None
            for chunk in _fastcdc_compiled(view, p.min_size, p.avg_size, p.max_size):
                yield chunk.offset, chunk.length
            return
        offset = 0
        for length in _gearcut.cuts(view, p.min_size, p.max_size, *_scan_args(p)):
            yield offset, length
            offset += length

    def chunk_bytes(self, data: BytesLike) -> list[tuple[int, int]]:
        """Return (offset, length) of every chunk of ``data``; ``[]`` for empty data."""
        return list(self._cuts(byte_view(data)))

    @overload
    def chunk_file(self, source: ChunkSource, *, copy: Literal[True] = True) -> Iterator[bytes]: ...

    @overload
    def chunk_file(self, source: ChunkSource, *, copy: Literal[False]) -> Iterator[memoryview]: ...

    @overload
    def chunk_file(
        self, source: ChunkSource, *, copy: bool
    ) -> Iterator[bytes] | Iterator[memoryview]: ...

    def chunk_file(
        self, source: ChunkSource, *, copy: bool = True
    ) -> Iterator[bytes] | Iterator[memoryview]:
        """Read ``source`` to its end and yield its chunks in order.

        With ``copy=True`` (the default) each chunk is a new ``bytes`` object that may be
        handed to other threads.  With ``copy=False`` each chunk is a memoryview into the
        chunker's reused read buffer: it is valid only until the iterator is advanced, so
        hash or copy it first.  An empty source yields nothing; a source shorter than
        ``min_size`` yields one chunk.
        """
        views = self._stream(_as_reader(source))
        if copy:
            return (bytes(view) for view in views)
        return views

    def _stream(self, reader: Readable) -> Iterator[memoryview]:
        buffer = self._take_buffer()
        try:
            view = memoryview(buffer)
            filled, at_eof = 0, False
            while not at_eof:
                filled, at_eof = _fill(reader, view, filled)
                consumed = yield from self._emit_final(view[:filled], at_eof)
                tail = filled - consumed
                view[:tail] = view[consumed:filled]  # memoryview assignment handles overlap
                filled = tail
        finally:
            self._give_back(buffer)

    def _take_buffer(self) -> mmap.mmap:
        try:
            return self._spare_buffers.pop()
        except IndexError:
            # An anonymous map, not a bytearray: its pages cost memory only once a read
            # reaches them, so a 3 MiB file uses 3 MiB of the 8 MiB, not all of it (a
            # bytearray is zeroed, every page, when it is made).  Peak RSS of a backup of
            # files under the buffer size drops by the untouched rest of each buffer.
            return mmap.mmap(-1, self.buffer_size)

    def _give_back(self, buffer: mmap.mmap) -> None:
        if len(self._spare_buffers) < _MAX_SPARE_BUFFERS:
            self._spare_buffers.append(buffer)

    def _emit_final(self, data: memoryview, at_eof: bool) -> Generator[memoryview, None, int]:
        """Yield the chunks of ``data`` whose cut is final; return the bytes consumed."""
        end = len(data)
        for offset, length in self._cuts(data):
            stop = offset + length
            if stop == end and not at_eof and length < self.params.max_size:
                return offset
            yield data[offset:stop]
        return end
