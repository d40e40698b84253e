"""What the file engine needs of a vault, declared where it is used (restic's style).

Each protocol names only the calls one part of the engine makes; :class:`strongroom.vault.Vault`
satisfies them structurally, whether its storage is a local folder, object storage or a vault
server (the engine never learns which: it asks :attr:`capabilities`, never the backend).
``tests/test_seams.py`` holds a ``Vault`` against each of them under mypy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from strongroom.errors import StrongroomError
    from strongroom.storage.backend import BackendCapabilities
    from strongroom.vault import (
        ChunkClaims,
        ChunkWriter,
        Located,
        Place,
        PointManifest,
        RecoveryPoint,
    )
    from strongroom.vault.handoff import VaultHandoff


class Hashes(Protocol):
    def chunk_id(self, data: bytes | bytearray | memoryview) -> bytes: ...


class TreeSource(Protocol):
    """Reading a point's trees (ls, find, diff, restore)."""

    def read_tree(self, chunk_id: bytes) -> tuple[list[bytes], bytes]: ...


class OnStorage(Protocol):
    """Where the vault's storage is, as far as an engine cares (a local folder to keep out of
    a backup and a restore; what reads suit it)."""

    @property
    def capabilities(self) -> BackendCapabilities: ...


class PlannedReads(Hashes, Protocol):
    """Reading file contents in the order the packs hold them (``files/fetch.py``)."""

    def place_of(self, chunk_id: bytes) -> Place: ...
    def located_at(self, chunk_id: bytes, place: Place) -> Located: ...
    def locate(self, ids: Iterable[bytes]) -> list[Located]: ...
    def read_planned(
        self, chunks: Sequence[Located], span: int | None = None
    ) -> Iterator[bytes | StrongroomError]: ...


class DiffVault(TreeSource, Hashes, Protocol):
    """Comparing points with each other and with the live tree."""


class BackupVault(OnStorage, Protocol):
    """A files backup: its parent points, dedup against the index, the commit."""

    @property
    def vault_id(self) -> bytes: ...
    def local_cache_key(self, scope: str) -> bytes: ...
    def lock(
        self,
        exclusive: bool = False,
        wait: float | None = None,
        *,
        use_reserve: float | None = None,
    ) -> AbstractContextManager[object]: ...
    def writer(
        self, upload_workers: int | None = None, claims: ChunkClaims | None = None
    ) -> ChunkWriter: ...
    def points(
        self, strict: bool | None = None, include_deleted: bool = False
    ) -> list[RecoveryPoint]: ...
    def missing_chunks(self, ids: Iterable[bytes]) -> set[bytes]: ...
    def save_point(self, manifest: PointManifest) -> RecoveryPoint: ...
    def handoff(self) -> VaultHandoff | None: ...
    def adopt_index(self, names: Iterable[str]) -> None: ...
    @property
    def index_names(self) -> set[str]: ...


class RestoreVault(TreeSource, PlannedReads, OnStorage, Protocol):
    """A files restore: the point's trees, then its contents in pack order (in worker
    processes too, where the storage allows: :meth:`handoff`)."""

    def read_lock(self, wait: float | None = None) -> AbstractContextManager[object]: ...
    def handoff(self) -> VaultHandoff | None: ...


class MountVault(TreeSource, Protocol):
    """A mounted point (``files/mount.py``): its trees, and chunks one at a time for reads
    at any offset (their sizes from :meth:`locate`)."""

    def read_chunk(self, chunk_id: bytes) -> bytes: ...
    def locate(self, ids: Iterable[bytes]) -> list[Located]: ...
    def read_lock(self, wait: float | None = None) -> AbstractContextManager[object]: ...


class FilesVault(BackupVault, RestoreVault, DiffVault, MountVault, Protocol):
    """Everything the file engine asks of a vault."""
