"""Ordered parallel chunk fetching for restores, and writing a chunk stream into a file.

Chunks are fetched (read, decrypted, decompressed, verified) by a thread pool in groups of
consecutive chunks, at most ``window`` groups ahead, and handed back in order.  A chunk that
cannot be read comes back as its exception, so one damaged chunk fails one file, not the whole
restore.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from strongroom.errors import StrongroomError

Fetched = bytes | StrongroomError

_GROUP_CHUNKS = 32
_GROUP_BYTES = 8 << 20


def _read_group(read: Callable[[bytes], bytes], ids: list[bytes]) -> list[Fetched]:
    out: list[Fetched] = []
    for cid in ids:
        try:
            out.append(read(cid))
        except StrongroomError as exc:
            out.append(exc)
    return out


def _groups(ids: Iterable[tuple[bytes, int]]) -> Iterator[list[bytes]]:
    group: list[bytes] = []
    size = 0
    for cid, raw in ids:
        group.append(cid)
        size += raw
        if len(group) >= _GROUP_CHUNKS or size >= _GROUP_BYTES:
            yield group
            group, size = [], 0
    if group:
        yield group


def fetch_ordered(
    read: Callable[[bytes], bytes],
    ids: Iterable[tuple[bytes, int]],
    workers: int = 4,
    window: int = 8,
) -> Generator[Fetched, None, None]:
    """Each chunk of ``ids`` ((id, raw size) pairs) in order, as bytes or its read error."""
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="files-fetch") as pool:
        ahead: deque[Future[list[Fetched]]] = deque()
        try:
            for group in _groups(ids):
                ahead.append(pool.submit(_read_group, read, group))
                if len(ahead) >= window:
                    yield from ahead.popleft().result()
            while ahead:
                yield from ahead.popleft().result()
        finally:
            for fut in ahead:
                fut.cancel()


class ExtentWriter:
    """Writes a chunk stream into a file's data extents (holes are left unwritten)."""

    def __init__(self, fd: int, extents: list[tuple[int, int]]) -> None:
        self._fd = fd
        self._extents = extents
        self._i = 0
        self._done = 0

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            if self._i >= len(self._extents):
                return  # more content than extents: the point said so, keep what fits
            offset, length = self._extents[self._i]
            room = length - self._done
            if room <= 0:
                self._i, self._done = self._i + 1, 0
                continue
            n = os.pwrite(self._fd, view[:room], offset + self._done)
            self._done += n
            view = view[n:]
