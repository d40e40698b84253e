"""What the image engine needs of a vault, declared where it is used (restic's style).

Each protocol names only the calls one part of the engine makes; :class:`strongroom.vault.Vault`
satisfies them structurally, over a local folder, object storage or a vault server alike.
``tests/test_seams.py`` holds a ``Vault`` against each of them under mypy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from strongroom.vault import ChunkWriter, PointManifest, RecoveryPoint, Unstored


class TreeStore(Protocol):
    """A point's records and chunk maps: tree chunks written and read back."""

    def put_tree(self, writer: ChunkWriter, refs: Sequence[bytes], body: bytes) -> bytes: ...
    def read_tree(self, chunk_id: bytes) -> tuple[list[bytes], bytes]: ...
    def read_chunk(self, chunk_id: bytes) -> bytes: ...


class Points(Protocol):
    def points(
        self, strict: bool | None = None, include_deleted: bool = False
    ) -> list[RecoveryPoint]: ...


class ImageBackupVault(TreeStore, Points, Protocol):
    """A disk or VM backup: its parent point, whether the parent's chunks are still there,
    new chunks, the commit."""

    def lock(
        self,
        exclusive: bool = False,
        wait: float | None = None,
        *,
        use_reserve: float | None = None,
    ) -> AbstractContextManager[object]: ...
    def writer(self, upload_workers: int | None = None) -> ChunkWriter: ...
    def missing_chunks(self, ids: Iterable[bytes]) -> set[bytes]: ...
    def save_point(self, manifest: PointManifest) -> RecoveryPoint: ...


class ImageRestoreVault(TreeStore, Protocol):
    """A disk or VM restore: every chunk checked before the first write, then read in order;
    the target's own chunks hashed to skip what is already there."""

    def read_lock(self, wait: float | None = None) -> AbstractContextManager[object]: ...
    def unstored(self, ids: Iterable[bytes]) -> Unstored: ...
    def read_chunks(
        self, ids: Iterable[bytes], workers: int | None = None, window: int = 16
    ) -> Iterator[bytes]: ...
    def chunk_id(self, data: bytes | bytearray | memoryview) -> bytes: ...


class ImageVault(ImageBackupVault, ImageRestoreVault, Protocol):
    """Everything the image engine asks of a vault (a VM provider backs up and restores)."""
