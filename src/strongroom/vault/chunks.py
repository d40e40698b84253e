"""What the engines ask of a vault about chunks: reads, ids, presence, read plans.

A mixin of :class:`~strongroom.vault.vault.Vault` (kept apart so that module stays about
opening, keys, locks and points).  Every method goes through the handle's current index and
reader, which :meth:`Vault.reload_index` replaces.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from strongroom.errors import StrongroomError
from strongroom.storage.backend import Backend, BackendCapabilities, capabilities_of
from strongroom.vault.crypto import VaultKeys

if TYPE_CHECKING:
    from strongroom.vault.index import ChunkIndex
    from strongroom.vault.reader import ChunkReader, Located, Place
    from strongroom.vault.stored import Unstored


class ChunkAccess:
    backend: Backend
    keys: VaultKeys

    @property
    def index(self) -> ChunkIndex:
        raise NotImplementedError

    @property
    def reader(self) -> ChunkReader:
        raise NotImplementedError

    @property
    def capabilities(self) -> BackendCapabilities:
        """What the storage under this vault is like (a local folder or remote), whatever
        wraps it: engines ask this, never the backend's class."""
        return capabilities_of(self.backend)

    def read_chunk(self, chunk_id: bytes) -> bytes:
        return self.reader.read(chunk_id)

    def read_chunks(
        self, ids: Iterable[bytes], workers: int | None = None, window: int = 16
    ) -> Iterator[bytes]:
        """Chunks in the order given, ``workers`` reads at a time (by default as many as the
        storage is worth), up to ``window`` ahead."""
        return self.reader.read_many(ids, workers or self.capabilities.read_workers, window)

    def chunk_id(self, data: bytes | bytearray | memoryview) -> bytes:
        """The id this vault gives ``data`` (its keyed hash)."""
        return self.keys.chunk_id(data)

    def has_chunk(self, chunk_id: bytes) -> bool:
        """Whether the index holds ``chunk_id`` (a backup may refer to it without storing it)."""
        return chunk_id in self.index

    def missing_chunks(self, ids: Iterable[bytes]) -> set[bytes]:
        """Those of ``ids`` the index does not hold (one vectorized search: a backup asks
        this for every cached file of a folder at once)."""
        wanted = list(ids)
        odd = {cid for cid in wanted if len(cid) != 32}  # not a chunk id: never indexed
        return odd | self.index.missing([cid for cid in wanted if len(cid) == 32])

    def unstored(self, ids: Iterable[bytes]) -> Unstored:
        """Which of ``ids`` cannot be read back: not indexed, or in a pack the storage lost
        (asked of the storage's metadata, nothing is read): a restore asks before it writes."""
        from strongroom.vault.stored import unstored

        return unstored(self.backend, self.index, ids)

    # A read plan: where chunks lie, as values an engine may hold by the million, sort (in
    # the order worth reading in) and hand back; their layout is the reader's.

    def place_of(self, chunk_id: bytes) -> Place:
        """Where ``chunk_id`` lies as one non-negative int that sorts in storage order
        (:data:`~strongroom.vault.reader.NOT_INDEXED`, after all others, if unknown)."""
        return self.reader.place(chunk_id)

    def located_at(self, chunk_id: bytes, place: Place) -> Located:
        """``chunk_id`` located from the ``place`` :meth:`place_of` gave (no lookup)."""
        return self.reader.located_at(chunk_id, place)

    def locate(self, ids: Iterable[bytes]) -> list[Located]:
        """Each id with its location (None: not indexed); a location's ``raw`` is the chunk's
        size, the rest is for :meth:`read_planned`."""
        return self.reader.locate(ids)

    def read_planned(
        self, chunks: Sequence[Located], span: int | None = None
    ) -> Iterator[bytes | StrongroomError]:
        """Each located chunk in order, or the error reading it raised; chunks adjacent in
        a pack come in one ranged read of up to ``span`` bytes (by default what suits the
        storage)."""
        return self.reader.read_run(chunks, span or self.capabilities.range_span)
