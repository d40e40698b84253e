"""Random access to one disk of an image point, read straight from the vault.

Every vault read the NBD exports of ``strongroom serve`` make goes through this module (so a
change in how engines reach the vault touches one place):

* :func:`open_point_disks` loads a point's disk records and chunk maps and checks that every
  chunk they name is in the vault before anything is served;
* :class:`ChunkCache` hands out a disk's chunks by index: zero chunks (holes the backup did
  not store) without a fetch, the others from an LRU cache bounded in bytes.  Several
  clients (NBD connections) share one cache: two asking for the same chunk wait for one
  fetch.  When a chunk is asked for right after its predecessor, the next ones are fetched
  in the background (read-ahead), several at a time, so decrypting and decompressing (which
  release the GIL) run in parallel with serving.

``guestfiles.reader.DiskReader`` works the same way for single-threaded file walks; this one
is thread-safe and may become the one both use.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from typing import Final

from strongroom.errors import ImageError
from strongroom.image.chunkmap import ChunkMap
from strongroom.image.records import DiskRecord, load_point
from strongroom.image.restore import check_chunks
from strongroom.records import dataclass
from strongroom.vault import RecoveryPoint, Vault

__all__ = ["DEFAULT_CACHE_BYTES", "CacheStats", "ChunkCache", "PointDisk", "open_point_disks"]

DEFAULT_CACHE_BYTES: Final = 64 << 20
READ_AHEAD: Final = 8
FETCH_WORKERS: Final = 4


@dataclass
class CacheStats:
    chunk_fetches: int = 0
    bytes_fetched: int = 0
    cache_hits: int = 0
    zero_chunks: int = 0
    read_ahead: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class PointDisk:
    """One disk of a point: its export name (the target, or ``disk``), record and map."""

    name: str
    record: DiskRecord
    cmap: ChunkMap


def open_point_disks(vault: Vault, point: RecoveryPoint, which: str | None) -> list[PointDisk]:
    """The point's disks (or only ``which``), maps loaded and every chunk checked."""
    vm = load_point(vault, point)
    records = [vm.disk(which)] if which is not None else vm.disks
    disks = [PointDisk(r.target or "disk", r, r.chunk_map(vault)) for r in records]
    check_chunks(vault, [d.cmap for d in disks])
    return disks


class ChunkCache:
    """Thread-safe chunks of one disk: ``chunk(index)`` is its bytes, or None for zeros."""

    def __init__(
        self,
        vault: Vault,
        disk: PointDisk,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        read_ahead: int = READ_AHEAD,
        workers: int = FETCH_WORKERS,
    ) -> None:
        self.vault, self.disk, self.cmap = vault, disk, disk.cmap
        self.chunk_size = disk.record.chunk_size
        self.size = disk.record.virtual_size
        self.read_ahead = read_ahead
        self.stats = CacheStats()
        # Room for the chunks being read ahead and for a few streams at once.
        self._max = max(cache_bytes // self.chunk_size, 4 * read_ahead + 4)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._inflight: dict[int, Future[bytes]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"fetch-{disk.name}")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def is_zero(self, index: int) -> bool:
        return self.cmap.get(index) is None

    def length(self, index: int) -> int:
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def chunk(self, index: int) -> bytes | None:
        """The chunk's bytes (None: all zeros); a vault error is raised (never zeros)."""
        cid = self.cmap.get(index)
        if cid is None:
            self.stats.zero_chunks += 1
            return None
        with self._lock:
            sequential = index - 1 in self._cache or index - 1 in self._inflight
            data = self._cache.get(index)
            future = None
            if data is not None:
                self._cache.move_to_end(index)
                self.stats.cache_hits += 1
            else:
                future = self._inflight.get(index) or self._submit(index, cid)
            if sequential:
                self._ahead(index)
        if data is not None:
            return data
        assert future is not None
        return future.result()

    def _submit(self, index: int, cid: bytes) -> Future[bytes]:
        """Start fetching ``index`` (lock held)."""
        future = self._pool.submit(self._fetch, index, cid)
        self._inflight[index] = future
        return future

    def _ahead(self, index: int) -> None:
        """Fetch the next stored chunks not cached or on their way (lock held)."""
        stop = min(self.cmap.count, index + 1 + self.read_ahead)
        for nxt in range(index + 1, stop):
            if nxt in self._cache or nxt in self._inflight:
                continue
            cid = self.cmap.get(nxt)
            if cid is not None:
                self.stats.read_ahead += 1
                self._submit(nxt, cid)

    def _fetch(self, index: int, cid: bytes) -> bytes:
        try:
            data = self.vault.read_chunk(cid)
            if len(data) != self.length(index):
                raise ImageError(
                    f"{self.disk.name}: chunk {index} holds {len(data)} bytes, "
                    f"expected {self.length(index)}"
                )
        except BaseException:
            with self._lock:
                self._inflight.pop(index, None)
            raise
        with self._lock:  # leaves in-flight and enters the cache at once: no double fetch
            self._inflight.pop(index, None)
            self.stats.chunk_fetches += 1
            self.stats.bytes_fetched += len(data)
            self._cache[index] = data
            self._cache.move_to_end(index)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return data
