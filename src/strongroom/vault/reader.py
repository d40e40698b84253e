"""Reading chunks back: index lookup, ranged pack reads, decrypt, decompress, verify.

A read that fails verification is retried once (a flipped bit in transit or a short read
is not worth failing a restore over); a second failure is reported naming the pack.

:meth:`ChunkReader.read_run` reads a run of chunks with as few storage reads as it can: blobs
that lie next to each other in one pack come in one ranged read.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from strongroom.errors import IntegrityError, ObjectNotFound, StrongroomError
from strongroom.storage.backend import Backend, capabilities_of
from strongroom.storage.batch import Range, get_ranges
from strongroom.vault.aead import AesGcm
from strongroom.vault.crypto import VaultKeys
from strongroom.vault.index import ChunkIndex, IndexEntry
from strongroom.vault.pack import BlobDecoder, pack_name

# A chunk id with its index entry (None: the index does not know it).  To an engine the entry
# is opaque but for ``raw``, the chunk's plaintext size.
Located = tuple[bytes, IndexEntry | None]

# Where a chunk lies, as one int (a read plan's compact form; the index owns its layout): an
# engine that holds one per file while it restores (a tree restore does) pays about 50 bytes
# where an IndexEntry in a tuple costs about 230, and places sort in the packs' order, which
# is the order worth reading in.  Places are never negative; NOT_INDEXED sorts after all.
Place = int
NOT_INDEXED: Place = 1 << 160

# The most bytes one coalesced read fetches by default: each reading thread holds one such span
# while it decodes the span's chunks, so this bounds the memory coalescing adds.  On object
# storage every read is a round trip, so spans are worth making this large.
SPAN_BYTES = 1 << 20
# Blobs this close together are read in one go, the gap with them (a few KiB cost less than
# another request).
SPAN_GAP = 4096
# The most bytes one batch read gathers (where the storage offers them, a served vault): the
# spans of a restore job's run come in one request instead of one each; the reading thread
# holds them while it decodes.
BATCH_BYTES = 8 << 20


class ChunkReader:
    def __init__(self, backend: Backend, keys: VaultKeys, index: ChunkIndex) -> None:
        self._backend, self._keys, self._index = backend, keys, index
        self._local = threading.local()
        self._ciphers: dict[bytes, AesGcm] = {}
        self._cipher_lock = threading.Lock()
        self._batches = capabilities_of(backend).batch_reads

    def _decoder(self) -> BlobDecoder:
        dec = getattr(self._local, "decoder", None)
        if dec is None:
            dec = self._local.decoder = BlobDecoder(self._keys)
        return dec

    def _cipher(self, pack_id: bytes) -> AesGcm:
        with self._cipher_lock:
            cipher = self._ciphers.get(pack_id)
            if cipher is None:
                if len(self._ciphers) > 4096:
                    self._ciphers.clear()
                cipher = self._keys.pack_cipher(self._index.salt_of(pack_id))
                self._ciphers[pack_id] = cipher
            return cipher

    def entry(self, chunk_id: bytes) -> IndexEntry:
        entry = self._index.lookup(chunk_id)
        if entry is None:
            raise _not_indexed(chunk_id)
        return entry

    def locate(self, chunk_ids: Iterable[bytes]) -> list[Located]:
        """Each id with its index entry, for :meth:`read_run` (which then looks nothing up)."""
        lookup = self._index.lookup
        return [(cid, lookup(cid)) for cid in chunk_ids]

    def place(self, chunk_id: bytes) -> Place:
        """Where ``chunk_id`` lies as one int (:data:`NOT_INDEXED` if it is unknown)."""
        place = self._index.place(chunk_id)
        return NOT_INDEXED if place is None else place

    def located_at(self, chunk_id: bytes, place: Place) -> Located:
        """``chunk_id`` with the entry :meth:`place` encoded, without a lookup."""
        if place < 0 or place >= NOT_INDEXED:
            return chunk_id, None
        return chunk_id, self._index.entry_at(place)

    def read(self, chunk_id: bytes) -> bytes:
        return self._read_alone(chunk_id, self.entry(chunk_id), attempts=2)

    def _read_alone(self, chunk_id: bytes, entry: IndexEntry, attempts: int) -> bytes:
        name = pack_name(entry.pack)
        for attempt in range(1, attempts + 1):
            try:
                stored = self._backend.get_range(name, entry.offset, entry.length)
            except ObjectNotFound:
                raise IntegrityError(
                    f"{name}: pack missing (holds chunk {chunk_id.hex()[:16]})", name=name
                ) from None
            try:
                if len(stored) != entry.length:
                    raise IntegrityError(
                        f"{name}: short read of chunk {chunk_id.hex()[:16]}", name=name
                    )
                cipher, dec = self._cipher(entry.pack), self._decoder()
                payload = dec.decrypt(
                    cipher, stored, chunk_id, entry.ctype, entry.flags, entry.raw, name
                )
                # the stored bytes let go before decompressing (up to 4 MiB: BlobDecoder)
                del stored
                return dec.finish(payload, chunk_id, entry.flags, entry.raw, name)
            except IntegrityError:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _decode(
        self, chunk_id: bytes, entry: IndexEntry, stored: bytes | memoryview, name: str
    ) -> bytes:
        return self._decoder().decode(
            self._cipher(entry.pack), stored, chunk_id, entry.ctype, entry.flags, entry.raw, name
        )

    def read_run(
        self, chunks: Sequence[Located], span: int = SPAN_BYTES
    ) -> Iterator[bytes | StrongroomError]:
        """Each chunk of ``chunks`` in order, or the error reading it raised.

        Blobs adjacent in one pack (up to ``span`` bytes, gaps up to :data:`SPAN_GAP`) are
        fetched with one ranged read: on a local vault that saves an open, a read and a close
        per chunk, on object storage a request (and where the storage offers batch reads, a
        served vault, the spans of up to :data:`BATCH_BYTES` come in one call).  A chunk whose
        span cannot be fetched is read alone, with :meth:`read`'s retry; one that fails
        verification in its span is read alone once more, so every chunk gets the same two
        chances and the same messages as with :meth:`read`.  Errors come back as values so
        that one damaged chunk fails one file, not the run.
        """
        spans = _spans(chunks, span)
        if not self._batches or len(spans) < 2:
            for start, stop in spans:
                if stop - start == 1:
                    yield self._read_one(*chunks[start])
                else:
                    yield from self._read_span(chunks[start:stop])
            return
        for group in _groups(chunks, spans):
            fetched = self._fetch(chunks, group)
            for (start, stop), data in zip(group, fetched, strict=True):
                if data is None and stop - start == 1:
                    yield self._read_one(*chunks[start])
                else:
                    yield from self._read_span(chunks[start:stop], data)

    def _fetch(
        self, chunks: Sequence[Located], group: Sequence[tuple[int, int]]
    ) -> list[memoryview | None]:
        """The bytes of each span of ``group`` in one batch read (None for a chunk the index
        does not know, and for every span when the batch fails: each span is then fetched
        by a read of its own, as without batches, so its own read names the problem)."""
        wanted: list[Range] = []
        for start, stop in group:
            first, last = chunks[start][1], chunks[stop - 1][1]
            if first is not None and last is not None:
                end = last.offset + last.length
                wanted.append((pack_name(first.pack), first.offset, end - first.offset))
        try:
            got = iter(get_ranges(self._backend, wanted))
        except StrongroomError:
            return [None] * len(group)
        return [next(got) if chunks[start][1] is not None else None for start, _ in group]

    def _read_one(
        self, chunk_id: bytes, entry: IndexEntry | None, attempts: int = 2
    ) -> bytes | StrongroomError:
        try:
            if entry is None:
                raise _not_indexed(chunk_id)
            return self._read_alone(chunk_id, entry, attempts)
        except StrongroomError as exc:
            return exc

    def _read_span(
        self, run: Sequence[Located], fetched: memoryview | None = None
    ) -> Iterator[bytes | StrongroomError]:
        """The chunks of one span, from ``fetched`` (the span's bytes) or one ranged read."""
        first, last = run[0][1], run[-1][1]
        assert first is not None and last is not None  # _span_end only joins indexed chunks
        base = first.offset
        name = pack_name(first.pack)
        span = fetched
        if span is None:
            try:
                span = memoryview(
                    self._backend.get_range(name, base, last.offset + last.length - base)
                )
            except StrongroomError:
                span = memoryview(b"")  # every chunk is read alone: its own read names why
        for chunk_id, entry in run:
            assert entry is not None
            at = entry.offset - base
            stored = span[at : at + entry.length]
            if len(stored) != entry.length:
                yield self._read_one(chunk_id, entry)
                continue
            try:
                yield self._decode(chunk_id, entry, stored, name)
            except IntegrityError:
                yield self._read_one(chunk_id, entry, attempts=1)

    def read_many(
        self, ids: Iterable[bytes], workers: int = 4, window: int = 16
    ) -> Iterator[bytes]:
        """Chunks in the order given, fetched ``workers`` at a time, ``window`` ahead."""
        with ThreadPoolExecutor(workers, thread_name_prefix="chunk-read") as pool:
            ahead: deque[Future[bytes]] = deque()
            try:
                for cid in ids:
                    ahead.append(pool.submit(self.read, cid))
                    if len(ahead) >= window:
                        yield ahead.popleft().result()
                while ahead:
                    yield ahead.popleft().result()
            finally:
                for fut in ahead:
                    fut.cancel()


def _not_indexed(chunk_id: bytes) -> IntegrityError:
    return IntegrityError(f"chunk {chunk_id.hex()[:16]} is not in the vault's index")


def _spans(chunks: Sequence[Located], span: int) -> list[tuple[int, int]]:
    """``chunks`` cut into the runs one ranged read each fetches: (start, stop) pairs."""
    out, start = [], 0
    while start < len(chunks):
        stop = _span_end(chunks, start, span)
        out.append((start, stop))
        start = stop
    return out


def _groups(
    chunks: Sequence[Located], spans: list[tuple[int, int]]
) -> Iterator[list[tuple[int, int]]]:
    """Consecutive spans fetched by one batch read: up to :data:`BATCH_BYTES` of them."""
    group: list[tuple[int, int]] = []
    size = 0
    for start, stop in spans:
        first, last = chunks[start][1], chunks[stop - 1][1]
        length = 0 if first is None or last is None else last.offset + last.length - first.offset
        if group and size + length > BATCH_BYTES:
            yield group
            group, size = [], 0
        group.append((start, stop))
        size += length
    if group:
        yield group


def _span_end(chunks: Sequence[Located], start: int, span: int) -> int:
    """End of the run from ``start`` that one ranged read can fetch (at least one chunk)."""
    head = chunks[start][1]
    if head is None:
        return start + 1
    pack, base = head.pack, head.offset
    end = head.offset + head.length
    stop = start + 1
    while stop < len(chunks):
        entry = chunks[stop][1]
        if (
            entry is None
            or entry.pack != pack
            or not end <= entry.offset <= end + SPAN_GAP
            or entry.offset + entry.length - base > span
        ):
            break
        end = entry.offset + entry.length
        stop += 1
    return stop
