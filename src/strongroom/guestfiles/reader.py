"""A read-only, seekable file over one disk of an image point, read straight from the vault.

The filesystem parsers issue many small reads (an inode, a directory block, an extent tree
node: a few hundred bytes each, tens of thousands for a walk); fetching and decrypting the
1 MiB chunk behind each of them would read the vault a thousand times over.  So chunks are
kept in an LRU cache (bounded in bytes), zero chunks (holes the backup did not store) come
back as zeros without a fetch, and when reads move forward through consecutive chunks the
next ones are fetched together (read-ahead, one coalesced pack read through
:meth:`ChunkReader.read_run`).  :class:`ReadStats` counts what was fetched against what was
asked for, so the amplification of a walk can be measured (``docs/image-files.md``).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import asdict
from typing import Final

from strongroom.errors import GuestFilesError, StrongroomError
from strongroom.image.chunkmap import ChunkMap
from strongroom.records import dataclass
from strongroom.vault import Vault

__all__ = ["DEFAULT_CACHE_BYTES", "DiskReader", "ReadStats"]

DEFAULT_CACHE_BYTES: Final = 64 << 20
# Chunks fetched ahead once reads are sequential: restoring a big file reads it in runs
# this long (one ranged pack read each when the chunks lie together in a pack).
READ_AHEAD: Final = 8


@dataclass
class ReadStats:
    reads: int = 0  # read calls
    bytes_asked: int = 0  # bytes the callers asked for and got
    chunk_fetches: int = 0  # chunks read from the vault
    bytes_fetched: int = 0  # their plaintext bytes
    zero_chunks: int = 0  # reads served from a hole without a fetch
    cache_hits: int = 0

    def amplification(self) -> float:
        """Bytes fetched per byte asked for (0 when nothing was asked)."""
        return self.bytes_fetched / self.bytes_asked if self.bytes_asked else 0.0

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "amplification": round(self.amplification(), 3)}


class DiskReader(io.RawIOBase):
    """``read``/``readinto``/``seek``/``tell`` over a disk's chunk map."""

    def __init__(
        self,
        vault: Vault,
        cmap: ChunkMap,
        chunk_size: int,
        size: int,
        *,
        name: str = "disk",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        stats: ReadStats | None = None,
    ) -> None:
        super().__init__()
        self.vault, self.cmap, self.chunk_size, self.size = vault, cmap, chunk_size, size
        self.name = name
        self.stats = stats if stats is not None else ReadStats()
        self._pos = 0
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_max = max(2, cache_bytes // chunk_size)
        self._last = -2  # the chunk index of the previous miss: sequential detection
        self._lock = threading.Lock()

    # --- io.RawIOBase ------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def read(self, size: int | None = -1, /) -> bytes:
        with self._lock:
            end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
            data = self._read_range(self._pos, max(0, end - self._pos))
            self._pos += len(data)
            return data

    def readinto(self, buffer: bytearray | memoryview, /) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    # --- chunks ------------------------------------------------------------------------

    def _read_range(self, pos: int, length: int) -> bytes:
        if length <= 0:
            return b""
        self.stats.reads += 1
        self.stats.bytes_asked += length
        cs = self.chunk_size
        first, last = pos // cs, (pos + length - 1) // cs
        if first == last:  # the common case: a small read inside one chunk
            at = pos - first * cs
            return self._chunk(first)[at : at + length]
        parts = []
        for index in range(first, last + 1):
            base = index * cs
            lo, hi = max(pos, base) - base, min(pos + length, base + cs) - base
            parts.append(self._chunk(index)[lo:hi])
        return b"".join(parts)

    def _length(self, index: int) -> int:
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def _chunk(self, index: int) -> bytes:
        data = self._cache.get(index)
        if data is not None:
            self._cache.move_to_end(index)
            self.stats.cache_hits += 1
            return data
        if self.cmap.get(index) is None:
            self.stats.zero_chunks += 1
            return bytes(self._length(index))
        ahead = min(READ_AHEAD, self._cache_max - 1) if index == self._last + 1 else 1
        self._last = index
        return self._fetch(index, ahead)

    def _fetch(self, index: int, ahead: int) -> bytes:
        """Fetch ``index`` and up to ``ahead - 1`` stored chunks after it that are not cached."""
        wanted = [index]
        nxt = index + 1
        while len(wanted) < ahead and nxt < self.cmap.count:
            if nxt not in self._cache and self.cmap.get(nxt) is not None:
                wanted.append(nxt)
            nxt += 1
        ids = [self.cmap.get(i) for i in wanted]
        located = self.vault.locate(cid for cid in ids if cid is not None)
        mine = b""
        for i, got in zip(wanted, self.vault.read_planned(located), strict=True):
            if isinstance(got, StrongroomError):
                if i == index:
                    raise GuestFilesError(
                        f"{self.name}: cannot read bytes at offset {i * self.chunk_size} "
                        f"from the vault: {got}"
                    )
                continue  # a read-ahead chunk: its own read reports it if it is needed
            self.stats.chunk_fetches += 1
            self.stats.bytes_fetched += len(got)
            self._put(i, got)
            if i == index:
                mine = got
        self._last = wanted[-1]
        return mine

    def _put(self, index: int, data: bytes) -> None:
        self._cache[index] = data
        self._cache.move_to_end(index)
        while len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)
