"""Reading one file's content as chunks: small files in one read, big ones through CDC.

A file smaller than the chunker's ``min_size`` is exactly one chunk (CDC would cut it the same
way), read with a single ``readv`` into a per-thread buffer and handed to ``put`` without any
chunker call.  Bigger files stream through :class:`ContentChunker`; a big one's chunks are put
by helper threads while the reading thread reads and cuts on (see :data:`_SPREAD_FROM`).
Sparse files (fewer allocated blocks than their size) are read extent by extent
(SEEK_DATA/SEEK_HOLE): the chunks cover the concatenated data extents and the holes are
recorded, not read.

``put`` turns a chunk into its id: ``ChunkWriter.put`` when backing up, the keyed hash alone
when comparing (diff --live, restore --verify).
"""

from __future__ import annotations

import errno
import mmap
import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from strongroom.anonmem import anonymous_map
from strongroom.chunking import BytesLike, ContentChunker
from strongroom.files.longpath import open_file
from strongroom.files.metadata import ExtentReader, data_extents
from strongroom.records import dataclass

Put = Callable[[BytesLike], bytes]

# A file at least this big has its chunks put (hashed, compressed, encrypted: all without the
# interpreter lock) by helper threads, a few chunks ahead of the reading thread.  One thread
# had done a whole file: the last big file of a backup ran on one core (two files of 512 MiB
# on two cores: the last 0.8 s of 2.9 at one core; one such file, all of it).  Below this a
# file's few chunks would cost more in hand-offs than they gain, and the reader threads
# already spread the files.
_SPREAD_FROM = 8 << 20

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
    """Thread-safe: each thread gets its own small-file buffer.  ``helpers``: threads that put
    a big file's chunks (0: the reading thread does; see :data:`_SPREAD_FROM`); started at
    the first big file, stopped by :meth:`close`.  ``tick(size)`` runs on the reading thread
    after each chunk the helpers put (``put`` itself runs on theirs)."""

    def __init__(
        self,
        chunker: ContentChunker,
        put: Put,
        helpers: int = 0,
        tick: Callable[[int], None] | None = None,
    ) -> None:
        self.chunker = chunker
        self.put = put
        self.tick = tick
        self.small = chunker.params.min_size
        self._local = threading.local()
        self.helpers = helpers  # set to 0 to stop spreading (worker processes took over)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._free: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()  # chunk copies
        self._big_reads = 0  # files being read by _read_spread
        self._threads = 0

    def close(self) -> None:
        """Stop the helper threads (after every read has returned)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def buffer(self) -> memoryview:
        """This thread's small-file buffer: ``min_size + 1`` bytes (a file that fills it is
        not small)."""
        view: memoryview | None = getattr(self._local, "view", None)
        if view is None:
            # page-aligned, as the files read into it start (anonmem.py says why)
            view = self._local.view = memoryview(anonymous_map(self.small + 1))
        return view

    def read(self, fd: int, st: os.stat_result) -> Content:
        """Chunk ids of the file open at ``fd`` (read from its start); ``st`` is its fstat."""
        size = st.st_size
        extents = data_extents(fd, size) if st.st_blocks * 512 < size else None
        if extents is None and size < self.small:
            return self._read_small(fd, size)
        spread = self.helpers > 0 and size >= _SPREAD_FROM
        if extents is not None:
            return self._read_stream(ExtentReader(fd, extents), extents, spread)
        os.lseek(fd, 0, os.SEEK_SET)
        return self._read_stream(fd, None, spread)

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
        self,
        source: int | ExtentReader,
        extents: list[tuple[int, int]] | None,
        spread: bool = False,
    ) -> Content:
        if spread:
            return self._read_spread(source, extents)
        chunks: list[bytes] = []
        nread = 0
        for piece in self.chunker.chunk_file(source, copy=False):
            nread += len(piece)
            chunks.append(self.put(piece))
        return Content(chunks, extents, nread)

    def _read_spread(
        self, source: int | ExtentReader, extents: list[tuple[int, int]] | None
    ) -> Content:
        """:meth:`_read_stream` with the puts on the helper threads, at most one chunk a
        helper ahead of this thread, while no other thread reads a big file: two big files at
        once already keep two threads busy, and handing their chunks over too cost 3-5 % more
        CPU.  Each chunk handed over is copied (the chunker's buffer moves on) into one of
        the helpers' slots, reused: a new ``bytes`` a chunk had cost a fresh mapping and its
        page faults (twice the system time)."""
        pool, most = self._helper_pool()
        ahead: deque[tuple[Future[bytes], mmap.mmap]] = deque()
        chunks: list[bytes] = []
        nread = 0
        with self._pool_lock:
            self._big_reads += 1
        try:
            for piece in self.chunker.chunk_file(source, copy=False):
                n = len(piece)
                nread += n
                slot = self._slot(ahead, chunks, most)
                if slot is None:  # another big file is being read: put it here
                    while ahead:
                        self._release(self._oldest(ahead, chunks))
                    chunks.append(self.put(piece))
                    continue
                slot[:n] = piece
                ahead.append((pool.submit(self.put, memoryview(slot)[:n]), slot))
                if self.tick is not None:
                    self.tick(n)
            while ahead:
                self._release(self._oldest(ahead, chunks))
        finally:  # a failed read: no put of this file still running once it is reported
            with self._pool_lock:
                self._big_reads -= 1
            for f, _ in ahead:
                f.cancel()
            wait([f for f, _ in ahead])
            for _, slot in ahead:
                self._release(slot)
        return Content(chunks, extents, nread)

    def _slot(
        self, ahead: deque[tuple[Future[bytes], mmap.mmap]], chunks: list[bytes], most: int
    ) -> mmap.mmap | None:
        """A slot for the next chunk: this file's oldest once ``most`` chunks are out, else
        a free one; None while another big file is read, once the helpers are turned off
        (worker processes took over) or, in a race, when no slot is free."""
        if self._big_reads > 1 or self.helpers == 0:
            return None
        if len(ahead) >= most:
            return self._oldest(ahead, chunks)
        try:
            return self._free.get_nowait()
        except queue.Empty:
            return self._oldest(ahead, chunks) if ahead else None

    def _release(self, slot: mmap.mmap) -> None:
        """A slot free again after a file, its pages given back (a few page faults when it
        is next used) so that one big file early in a tree does not hold them to the end."""
        slot.madvise(mmap.MADV_DONTNEED)
        self._free.put(slot)

    def _oldest(
        self, ahead: deque[tuple[Future[bytes], mmap.mmap]], chunks: list[bytes]
    ) -> mmap.mmap:
        """The oldest chunk's id appended to ``chunks``; its slot, free again (given back
        when its put failed)."""
        f, slot = ahead.popleft()
        try:
            chunks.append(f.result())
        except BaseException:
            self._release(slot)
            raise
        return slot

    def _helper_pool(self) -> tuple[ThreadPoolExecutor, int]:
        """The helper threads and how many they are (one slot each)."""
        with self._pool_lock:
            if self._pool is None:
                self._threads = max(1, self.helpers)
                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="chunk-put")
                size = self.chunker.params.max_size  # anonymous maps: pages cost once touched
                for _ in range(self._threads):
                    self._free.put(mmap.mmap(-1, size))
            return self._pool, self._threads
