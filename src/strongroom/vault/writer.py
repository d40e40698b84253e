"""The chunk writer: dedup, compress, encrypt, pack, upload, index.

``put`` is thread-safe: callers hash and compress in their own threads (blake3 and zstd release
the GIL) and only the append into the current pack is serialized.  Finished packs upload on a
small pool while the next pack fills (a streamed local pack is made durable and named on a
commit thread behind it); a pack's entries reach the index only after its upload
succeeded, so a failed upload never leaves a dedup entry that a later backup would trust.
Index objects are written after the packs they list (commit order: packs, index, point).

Packs that are uploaded but not yet listed in an index object wait in an
:class:`UnindexedPacks` list that all writers of one vault share: if writing an index object
fails, its packs go back on the list and the next flush (of any writer of that vault, or the
next ``save_point``) lists them, so a chunk that a later backup deduplicates against is always
in an index object before a point that needs it is committed.
"""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple, Protocol, runtime_checkable

from strongroom import failpoints
from strongroom.errors import StorageError, VaultError
from strongroom.records import dataclass
from strongroom.storage.backend import Backend
from strongroom.storage.names import content_digest
from strongroom.vault.claims import ChunkClaims
from strongroom.vault.compress import ChunkCompressor
from strongroom.vault.crypto import VaultKeys
from strongroom.vault.entries import Entries
from strongroom.vault.envelope import MAGIC_INDEX, object_name_hash, seal_object
from strongroom.vault.index import ChunkIndex, PackRecord, encode_index
from strongroom.vault.pack import BLOB_OVERHEAD, FLAG_ZSTD, PackBuilder, pack_name
from strongroom.vault.packstream import PackSink, PackStream

CHUNK_DATA = 0
CHUNK_TREE = 1
INDEX_PREFIX = "index/"
_INDEX_EVERY_PACKS = 64
_INDEX_EVERY_ENTRIES = 1 << 15  # bounds an index object's size (and the memory to load it)
_STREAM_FOLDER = "data"
_COMMITS_QUEUED = 4  # packs written and waiting for (or in) their commit, at most


@runtime_checkable
class _Streams(Protocol):
    """A backend that can write an object piece by piece (the local one)."""

    def open_stream(self, folder: str) -> PackSink: ...


@dataclass
class WriterStats:
    chunks_new: int = 0
    chunks_dedup: int = 0
    raw_new: int = 0
    stored_new: int = 0
    packs: int = 0
    index_objects: int = 0


class PutResult(NamedTuple):
    """A put's chunk id and whether this put stored it (a tuple: made per chunk, and a
    frozen dataclass's ``__init__`` costs a call per field)."""

    chunk_id: bytes
    new: bool


def write_index_object(backend: Backend, keys: VaultKeys, vault_id: bytes, plain: bytes) -> str:
    stored = seal_object(MAGIC_INDEX, keys.index_key, vault_id, plain)
    name = INDEX_PREFIX + object_name_hash(stored)
    backend.put(name, stored)
    return name


class UnindexedPacks:
    """Uploaded packs not yet in any index object; shared by every writer of one vault."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[PackRecord] = []
        self._entries = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def add(self, record: PackRecord) -> bool:
        """Queue ``record``; whether enough waits to be worth an index object now."""
        with self._lock:
            self._records.append(record)
            self._entries += len(record.entries)
            return len(self._records) >= _INDEX_EVERY_PACKS or self._entries >= _INDEX_EVERY_ENTRIES

    def take(self) -> list[PackRecord]:
        with self._lock:
            records, self._records, self._entries = self._records, [], 0
            return records

    def give_back(self, records: list[PackRecord]) -> None:
        with self._lock:
            self._records[:0] = records
            self._entries += sum(len(r.entries) for r in records)

    def write(
        self,
        backend: Backend,
        keys: VaultKeys,
        vault_id: bytes,
        on_written: Callable[[str], None] | None = None,
    ) -> str | None:
        """Write one index object listing every waiting pack; on failure they wait again."""
        records = self.take()
        if not records:
            return None
        try:
            name = write_index_object(backend, keys, vault_id, encode_index(records))
        except BaseException:
            self.give_back(records)
            raise
        if on_written is not None:
            on_written(name)
        return name


class ChunkWriter:
    def __init__(
        self,
        backend: Backend,
        keys: VaultKeys,
        vault_id: bytes,
        index: ChunkIndex,
        *,
        pack_size: int,
        compression_level: int = 1,
        upload_workers: int = 2,
        unindexed: UnindexedPacks | None = None,
        on_index_written: Callable[[str], None] | None = None,
        claims: ChunkClaims | None = None,
    ) -> None:
        self._backend, self._keys, self._vault_id, self._index = backend, keys, vault_id, index
        self._unindexed = unindexed if unindexed is not None else UnindexedPacks()
        self._on_index_written = on_index_written
        self._pack_size = pack_size
        self._compressor = ChunkCompressor(compression_level)
        self._lock = threading.Lock()
        self._pack_lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._pending: set[bytes] = set()
        # last in, first out: the builder just freed has its pages in memory; a third one is
        # touched only when two packs are in flight at once (not round-robin: all three)
        self._builders: queue.LifoQueue[PackBuilder] = queue.LifoQueue()
        self._current: PackBuilder | None = None
        self._uploads = ThreadPoolExecutor(upload_workers, thread_name_prefix="pack-upload")
        # a streamed pack's commit (fsync, rename, the folder's fsync: tens of ms on a
        # virtual disk) and its indexing, off the upload threads (see _upload)
        self._commits = ThreadPoolExecutor(1, thread_name_prefix="pack-commit")
        self._uncommitted: set[PackSink] = set()
        # back-pressure: a disk whose fsyncs fall behind holds up the upload thread, not an
        # ever longer queue of open files and their packs' entries
        self._commit_slots = threading.BoundedSemaphore(_COMMITS_QUEUED)
        self._all_builders = [
            PackBuilder(keys, pack_size + pack_size // 4, self._stream())
            for _ in range(upload_workers + 1)
        ]
        for builder in self._all_builders:
            self._builders.put(builder)
        self._futures: list[Future[None]] = []
        self._error: BaseException | None = None
        self.stats = WriterStats()
        self.index_names: list[str] = []
        self.claims = claims  # shared with the other processes of one backup (claims.py)
        # chunks not stored because another process claimed them (claims.py): whoever saves
        # the point checks that the index holds them
        self.borrowed: list[bytes] = []

    def _stream(self) -> PackStream | None:
        """Stream packs where the backend can (memory: a few MiB per builder, not a pack)."""
        backend = self._backend
        if not isinstance(backend, _Streams):
            return None
        return PackStream(lambda: backend.open_stream(_STREAM_FOLDER), self._uploads.submit)

    # --- hot path --------------------------------------------------------------------------

    def chunk_id(self, data: bytes | bytearray | memoryview) -> bytes:
        return self._keys.chunk_id(data)

    def has(self, chunk_id: bytes) -> bool:
        with self._lock:
            return chunk_id in self._pending or chunk_id in self._index

    def put(
        self,
        data: bytes | bytearray | memoryview,
        ctype: int = CHUNK_DATA,
        chunk_id: bytes | None = None,
    ) -> PutResult:
        """Store ``data`` unless the vault already has it; returns its id."""
        if self._error is not None:
            self._raise_if_failed()
        cid = chunk_id if chunk_id is not None else self._keys.chunk_id(data)
        with self._lock:
            if cid in self._pending or cid in self._index:
                self.stats.chunks_dedup += 1
                return PutResult(cid, False)
            if self.claims is not None and not self.claims.claim(cid):
                self.stats.chunks_dedup += 1
                self.borrowed.append(cid)
                return PutResult(cid, False)
            self._pending.add(cid)
        try:
            packed = self._compressor.compress(data)
            if packed is None:
                self._append(cid, ctype, data, 0, len(data))
            else:
                self._append(cid, ctype, packed, FLAG_ZSTD, len(data))
        except BaseException:
            with self._lock:
                self._pending.discard(cid)
            raise
        return PutResult(cid, True)

    def _append(
        self, cid: bytes, ctype: int, payload: bytes | bytearray | memoryview, flags: int, raw: int
    ) -> None:
        with self._pack_lock:
            builder = self._current
            if builder is None:
                builder = self._current = self._builders.get()
                builder.start()
            try:
                builder.add(cid, ctype, payload, flags, raw)
            except BaseException as exc:
                self._abandon_current(exc)
                raise
            # these three change only here, under the pack lock (chunks_dedup: under _lock)
            stats = self.stats
            stats.chunks_new += 1
            stats.raw_new += raw
            stats.stored_new += len(payload) + BLOB_OVERHEAD
            if builder.size >= self._pack_size:
                self._seal_current()

    def _abandon_current(self, exc: BaseException) -> None:
        """A streamed write failed: the pack is lost, and so is every put into it."""
        builder, self._current = self._current, None
        if builder is None:
            return
        ids = builder.abandon()
        with self._lock:
            self._error = self._error or exc
            self._pending.difference_update(ids)
        self._builders.put(builder)

    def _seal_current(self) -> None:
        builder = self._current
        self._current = None
        if builder is None:
            return
        if builder.count == 0:
            self._builders.put(builder)
            return
        data, entries = builder.finish()
        # the upload runs in the context of the thread that sealed the pack (a served
        # vault's repack names the sources it is storing for: storage/served.py)
        run = contextvars.copy_context().run
        fut = self._uploads.submit(run, self._upload, builder, data, entries, builder.salt)
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()] + [fut]

    # --- upload side -----------------------------------------------------------------------

    def _upload(
        self, builder: PackBuilder, data: memoryview, entries: Entries, salt: bytes
    ) -> None:
        """Write a sealed pack.  A streamed one is handed to the commit thread once its bytes
        are written: its builder is free for the next pack right away, and this thread goes
        on to the next pack's segments while the disk makes this one durable.  With both on
        one thread the chunk threads waited for every pack's fsyncs (docs/benchmarks.md,
        "Session 46")."""
        ids = entries.ids()
        stream = builder.stream if builder.streamed else None
        try:
            if stream is None:
                pack_id = content_digest(data)
                self._backend.put(pack_name(pack_id), data)
            else:
                pack_id, sink = stream.close_out(data)
        except BaseException as exc:
            if stream is not None:
                stream.abort()
            self._failed(exc, ids)
            raise
        finally:
            data.release()
            builder.release_memory()  # until its next pack (pack.py says why)
            self._builders.put(builder)
        if stream is None:
            self._indexed(PackRecord(pack_id, salt, entries), ids)
            return
        self._commit_slots.acquire()
        with self._lock:
            self._uncommitted.add(sink)
            run = contextvars.copy_context().run
            record = PackRecord(pack_id, salt, entries)
            fut = self._commits.submit(run, self._commit, sink, record, ids)
            self._futures.append(fut)

    def _commit(self, sink: PackSink, record: PackRecord, ids: list[bytes]) -> None:
        try:
            sink.commit(pack_name(record.pack_id))  # removes its file if it fails
        except BaseException as exc:
            self._failed(exc, ids)
            raise
        finally:
            with self._lock:
                self._uncommitted.discard(sink)
            self._commit_slots.release()
        self._indexed(record, ids)

    def _indexed(self, record: PackRecord, ids: list[bytes]) -> None:
        """The pack is stored: its chunks go into the index (and an index object when enough
        packs wait for one)."""
        try:
            self._index.add_pack(record.pack_id, record.salt, record.entries)
            with self._lock:
                self.stats.packs += 1
            if self._unindexed.add(record):
                self._write_index()
        except BaseException as exc:
            self._failed(exc, ids)
            raise
        with self._lock:
            self._pending.difference_update(ids)

    def _failed(self, exc: BaseException, ids: list[bytes]) -> None:
        with self._lock:
            self._error = self._error or exc
            self._pending.difference_update(ids)

    def _write_index(self) -> None:
        with self._index_lock:
            name = self._unindexed.write(
                self._backend, self._keys, self._vault_id, self._on_index_written
            )
            if name is None:
                return
            with self._lock:
                self.index_names.append(name)
                self.stats.index_objects += 1

    def _raise_if_failed(self) -> None:
        err = self._error
        if err is None:
            return
        if isinstance(err, StorageError):
            raise err
        raise VaultError(f"an earlier pack upload failed: {err}") from err

    # --- completion ------------------------------------------------------------------------

    def flush(self) -> None:
        """Upload everything buffered and index it; after this every put chunk is durable."""
        self._raise_if_failed()
        with self._pack_lock:
            self._seal_current()
        self._wait_all()
        self._raise_if_failed()
        failpoints.hit("after-packs")
        self._write_index()

    def _wait_all(self) -> None:
        """Until every upload and the commit each hands on are done (an upload adds its
        commit's future before it finishes, so a pass that finds nothing left is the end)."""
        while True:
            with self._lock:
                left = [f for f in self._futures if not f.done()]
                self._futures = left
            if not left:
                return
            for fut in left:
                with contextlib.suppress(BaseException):
                    fut.result()

    def close(self) -> None:
        """Stop the upload threads (call :meth:`flush` first to keep what was put).

        After a failure or an interrupt, uploads not yet started are dropped and the temporary
        files of packs never finished are removed; packs already named stay (unreferenced,
        prune removes them).
        """
        self._uploads.shutdown(wait=True, cancel_futures=True)
        self._commits.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            cancelled, self._uncommitted = list(self._uncommitted), set()
        for sink in cancelled:  # packs written whose commit never ran: no temporary files
            sink.abort()
        for builder in self._all_builders:
            stream = builder.stream
            if stream is not None and stream.sink is not None:
                stream.abort()
