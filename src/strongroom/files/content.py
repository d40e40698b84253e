"""Reading one file's content as chunks: small files in one read, big ones through CDC.

A file smaller than the chunker's ``min_size`` is exactly one chunk (CDC would cut it the same
way), read with a single ``readv`` into a per-thread buffer and handed to ``put`` without any
chunker call.  Bigger files stream through :class:`ContentChunker`.  Sparse files (fewer
allocated blocks than their size) are read extent by extent (SEEK_DATA/SEEK_HOLE): the chunks
cover the concatenated data extents and the holes are recorded, not read.

``put`` turns a chunk into its id: ``ChunkWriter.put`` when backing up, the keyed hash alone
when comparing (diff --live, restore --verify).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable

from strongroom.chunking import BytesLike, ContentChunker
from strongroom.files.longpath import open_file
from strongroom.files.metadata import ExtentReader, data_extents
from strongroom.records import dataclass

Put = Callable[[BytesLike], bytes]

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NOATIME = getattr(os, "O_NOATIME", 0)


@dataclass(slots=True)
class Content:
    chunks: list[bytes]
    extents: list[tuple[int, int]] | None
    nread: int


def open_for_reading(path: bytes) -> int:
    """Open a file to back it up: never follows a symlink, never blocks on a FIFO put in its
    place, and leaves its atime alone where the kernel lets us (owner or root)."""
    if _NOATIME:
        try:
            return open_file(path, OPEN_FLAGS | _NOATIME)
        except PermissionError as exc:
            if exc.errno != errno.EPERM:
                raise
    return open_file(path, OPEN_FLAGS)


class ContentReader:
    """Thread-safe: each thread gets its own small-file buffer."""

    def __init__(self, chunker: ContentChunker, put: Put) -> None:
        self.chunker = chunker
        self.put = put
        self.small = chunker.params.min_size
        self._local = threading.local()

    def buffer(self) -> memoryview:
        """This thread's small-file buffer: ``min_size + 1`` bytes (a file that fills it is
        not small)."""
        view: memoryview | None = getattr(self._local, "view", None)
        if view is None:
            view = self._local.view = memoryview(bytearray(self.small + 1))
        return view

    def read(self, fd: int, st: os.stat_result) -> Content:
        """Chunk ids of the file open at ``fd`` (read from its start); ``st`` is its fstat."""
        size = st.st_size
        extents = data_extents(fd, size) if st.st_blocks * 512 < size else None
        if extents is None and size < self.small:
            return self._read_small(fd, size)
        if extents is not None:
            return self._read_stream(ExtentReader(fd, extents), extents)
        os.lseek(fd, 0, os.SEEK_SET)
        return self._read_stream(fd, None)

    def _read_small(self, fd: int, size: int) -> Content:
        view = self.buffer()
        filled = 0
        while filled < len(view):
            n = os.preadv(fd, [view[filled:]], filled)
            if n == 0:
                break
            filled += n
            if filled == size:
                break  # all that fstat promised; a file growing now fails the re-stat
        if filled == len(view):  # grew past the small size while we read it
            os.lseek(fd, 0, os.SEEK_SET)
            return self._read_stream(fd, None)
        return self.small_content(view, filled)

    def small_content(self, view: memoryview, filled: int) -> Content:
        """The content of a small file read whole into ``view``'s first ``filled`` bytes."""
        if filled == 0:
            return Content([], None, 0)
        return Content([self.put(view[:filled])], None, filled)

    def _read_stream(
        self, source: int | ExtentReader, extents: list[tuple[int, int]] | None
    ) -> Content:
        chunks: list[bytes] = []
        nread = 0
        for piece in self.chunker.chunk_file(source, copy=False):
            nread += len(piece)
            chunks.append(self.put(piece))
        return Content(chunks, extents, nread)
