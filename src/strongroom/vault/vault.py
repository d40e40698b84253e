"""The Vault: one opened vault, its keys, index, chunks and recovery points.

The index, reader, writer and tree modules (numpy, the pack codec) are imported where they
are first used, after :meth:`Vault.open` has unwrapped the key: the passphrase's Argon2id
allocation then happens while little is loaded, which keeps each command's peak memory low.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from strongroom import failpoints
from strongroom.errors import (
    AmbiguousPoint,
    IntegrityError,
    KeySlotError,
    NotAVault,
    ObjectNotFound,
    PointNotFound,
    VaultError,
    VaultExists,
)
from strongroom.storage.backend import Backend
from strongroom.storage.local import LocalBackend
from strongroom.storage.served import committing_point
from strongroom.vault import keys as keyslots
from strongroom.vault.catalog import LoadProblems, PointCatalog, parallel_map
from strongroom.vault.config import (
    CONFIG_NAME,
    VaultConfig,
    VaultSettings,
    parse_config,
    verify_config_mac,
)
from strongroom.vault.crypto import MASTER_SECRET_SIZE, VaultKeys
from strongroom.vault.envelope import (
    MAGIC_INDEX,
    MAGIC_POINT,
    check_content_name,
    object_name_hash,
    open_object,
    read_checked,
    seal_object,
)
from strongroom.vault.locks import LockCodec, LockInfo, VaultLock, default_wait, remove_stale_locks
from strongroom.vault.points import POINTS_PREFIX, PointManifest, RecoveryPoint
from strongroom.vault.tombstones import Tombstone

if TYPE_CHECKING:
    from strongroom.vault.index import ChunkIndex
    from strongroom.vault.writer import ChunkWriter


class Vault:
    """An opened vault.  Build with :meth:`init` or :meth:`open`."""

    def __init__(
        self, backend: Backend, config: VaultConfig, keys: VaultKeys, slot_id: str
    ) -> None:
        from strongroom.vault.index import ChunkIndex
        from strongroom.vault.reader import ChunkReader
        from strongroom.vault.writer import UnindexedPacks

        self.backend = backend
        self.config = config
        self.keys = keys
        self.slot_id = slot_id
        self.index = ChunkIndex()
        self.problems = LoadProblems()
        self.catalog = PointCatalog(backend, keys, config.vault_id, self.problems)
        self.reader = ChunkReader(backend, keys, self.index)
        self._lock_codec = LockCodec(keys.lock_key, config.vault_id)
        self.index_names: set[str] = set()
        """Index objects this handle relies on: loaded at open or written since."""
        self.superseded: set[str] = set()
        """Index objects that a loaded one says it replaces (an interrupted prune's leftovers)."""
        self._unindexed = UnindexedPacks()
        self._held: set[VaultLock] = set()

    @property
    def vault_id(self) -> bytes:
        return self.config.vault_id

    # --- creating and opening --------------------------------------------------------------

    @classmethod
    def init(
        cls,
        backend: Backend,
        passphrase: str,
        *,
        settings: VaultSettings | None = None,
        kdf: keyslots.KDFParams | None = None,
        label: str = "",
    ) -> Vault:
        """Create a vault; the config object is written last, so it marks a complete vault."""
        try:
            backend.stat(CONFIG_NAME)
        except ObjectNotFound:
            pass
        else:
            raise VaultExists(f"{backend.describe()} already holds a vault")
        master = os.urandom(MASTER_SECRET_SIZE)
        config = VaultConfig.new(os.urandom(16), settings or VaultSettings())
        keys = VaultKeys.from_master(master)
        slot, stored = keyslots.new_slot(
            master, passphrase, config.vault_id, kdf or keyslots.KDFParams(), label
        )
        backend.put(keyslots.KEYS_PREFIX + slot.slot_id, stored)
        backend.put(CONFIG_NAME, config.serialize(keys))
        vault = cls(backend, config, keys, slot.slot_id)
        vault.catalog.start_empty()
        return vault

    @classmethod
    def open(
        cls, backend: Backend, passphrase: str | keyslots.SlotOpener, *, strict: bool = True
    ) -> Vault:
        """Open with ``passphrase`` (or a :class:`~strongroom.vault.keys.SlotOpener` holding
        it); ``strict=False`` records unreadable index objects instead of failing."""
        try:
            stored = backend.get(CONFIG_NAME)
        except ObjectNotFound:
            raise NotAVault(f"{backend.describe()} is not a strongroom vault (no config)") from None
        config, doc = parse_config(stored, backend.describe())
        opener = (
            passphrase
            if isinstance(passphrase, keyslots.SlotOpener)
            else keyslots.SlotOpener(backend, passphrase)
        )
        master, slot_id = opener.unlock(config.vault_id)
        keys = VaultKeys.from_master(master)
        verify_config_mac(doc, stored, keys)
        vault = cls(backend, config, keys, slot_id)
        vault.index_names = vault._load_index(vault.index, strict)
        return vault

    def open_index_object(self, name: str) -> bytes:
        """An index object's verified plaintext (fetched twice if the first copy is bad)."""

        def parse(stored: bytes) -> bytes:
            check_content_name(name, stored)
            return open_object(MAGIC_INDEX, self.keys.index_key, self.vault_id, stored, name=name)

        return read_checked(self.backend, name, parse)

    def _load_index(self, index: ChunkIndex, strict: bool) -> set[str]:
        """Load every index object into ``index``; the names of those that loaded."""
        from strongroom.vault.index import decode_index
        from strongroom.vault.writer import INDEX_PREFIX

        names = [info.name for info in self.backend.list(INDEX_PREFIX)]

        def load(name: str) -> IntegrityError | None:
            try:
                packs, sup = decode_index(self.open_index_object(name), name)
            except ObjectNotFound:
                return IntegrityError(f"{name}: vanished while loading", name=name)
            except IntegrityError as exc:
                return exc
            for rec in packs:
                index.add_pack(rec.pack_id, rec.salt, rec.entries, bulk=True)
            self.superseded.update(INDEX_PREFIX + old.hex() for old in sup)
            return None

        loaded = set()
        for name, problem in zip(names, parallel_map(load, names), strict=True):
            if problem is None:
                loaded.add(name)
            elif strict:
                raise problem
            else:
                self.problems.index.append(problem)
        index.finish_bulk()
        return loaded

    def reload_index(self) -> None:
        """Load the index afresh (after a prune or repair changed it); readers follow.

        The old index is dropped first, so memory never holds two of them.  A writer made
        before keeps adding to the old one: make new writers afterwards.
        """
        from strongroom.vault.index import ChunkIndex
        from strongroom.vault.reader import ChunkReader

        self.index = ChunkIndex()
        self.reader = ChunkReader(self.backend, self.keys, self.index)
        self.problems.index.clear()
        self.superseded.clear()
        self.index_names = self._load_index(self.index, strict=False)

    def refresh_config(self) -> VaultConfig:
        """Read ``config`` again (another client may have changed the settings)."""
        stored = self.backend.get(CONFIG_NAME)
        config, doc = parse_config(stored, self.backend.describe())
        if config.vault_id != self.vault_id:
            raise IntegrityError("config: the vault id changed", name=CONFIG_NAME)
        verify_config_mac(doc, stored, self.keys)
        self.config = config
        return config

    def close(self) -> None:
        self.backend.close()

    # --- keys ------------------------------------------------------------------------------

    def list_keys(self) -> list[keyslots.KeySlot]:
        found = []
        for info in self.backend.list(keyslots.KEYS_PREFIX):
            slot_id = info.name.rsplit("/", 1)[-1]
            found.append(keyslots.parse_slot(slot_id, self.backend.get(info.name))[0])
        return sorted(found, key=lambda s: s.created)

    def add_key(
        self, passphrase: str, kdf: keyslots.KDFParams | None = None, label: str = ""
    ) -> str:
        slot, stored = keyslots.new_slot(
            self.keys.master, passphrase, self.vault_id, kdf or keyslots.KDFParams(), label
        )
        self.backend.put(keyslots.KEYS_PREFIX + slot.slot_id, stored)
        return slot.slot_id

    def remove_key(self, slot_id: str) -> None:
        ids = {s.slot_id for s in self.list_keys()}
        if slot_id not in ids:
            raise KeySlotError(f"no key slot {slot_id!r} in this vault")
        if len(ids) == 1:
            raise KeySlotError(
                "refusing to remove the last key slot: the vault would be unreadable"
            )
        if slot_id == self.slot_id:
            raise KeySlotError(
                "refusing to remove the key slot in use; open with another passphrase"
            )
        self.backend.delete(keyslots.KEYS_PREFIX + slot_id)

    def change_passphrase(self, new_passphrase: str, kdf: keyslots.KDFParams | None = None) -> str:
        """Add a slot for the new passphrase, then remove the one in use."""
        old = self.slot_id
        label = next((s.label for s in self.list_keys() if s.slot_id == old), "")
        self.slot_id = self.add_key(new_passphrase, kdf, label)
        self.backend.delete(keyslots.KEYS_PREFIX + old)
        return self.slot_id

    # --- chunks ----------------------------------------------------------------------------

    def writer(self, upload_workers: int | None = None) -> ChunkWriter:
        """A chunk writer; by default one upload thread for a local vault (a local write is
        fast, and each uploader holds a pack buffer), four for object storage."""
        from strongroom.vault.writer import ChunkWriter

        if upload_workers is None:
            upload_workers = 1 if isinstance(self.backend, LocalBackend) else 4
        s = self.config.settings
        return ChunkWriter(
            self.backend,
            self.keys,
            self.vault_id,
            self.index,
            pack_size=s.pack_size,
            compression_level=s.compression_level,
            upload_workers=upload_workers,
            unindexed=self._unindexed,
            on_index_written=self.index_names.add,
        )

    def read_chunk(self, chunk_id: bytes) -> bytes:
        return self.reader.read(chunk_id)

    @staticmethod
    def put_tree(writer: ChunkWriter, refs: Sequence[bytes], body: bytes) -> bytes:
        from strongroom.vault.trees import encode_tree
        from strongroom.vault.writer import CHUNK_TREE

        return writer.put(encode_tree(refs, body), CHUNK_TREE).chunk_id

    def read_tree(self, chunk_id: bytes) -> tuple[list[bytes], bytes]:
        from strongroom.vault.trees import decode_tree

        return decode_tree(self.read_chunk(chunk_id))

    def lock(self, exclusive: bool = False, wait: float | None = None) -> VaultLock:
        """Shared (backup, restore) or exclusive (prune, repair) lock; use as a context.

        ``wait`` is how many seconds to wait for a conflicting lock to go away; by default the
        ``STRONGROOM_LOCK_WAIT`` environment variable, else 0 (fail at once).
        """
        lock = VaultLock(self.backend, self._lock_codec, exclusive, on_release=self._held.discard)
        lock.acquire(default_wait() if wait is None else wait)
        self._held.add(lock)
        return lock

    def held_locks(self) -> list[VaultLock]:
        return list(self._held)

    def remove_stale_locks(self) -> list[LockInfo]:
        """Delete locks whose holders are gone or silent (leaves evidence for them to find)."""
        return remove_stale_locks(self.backend, self._lock_codec)

    # --- recovery points -------------------------------------------------------------------

    def save_point(self, manifest: PointManifest) -> RecoveryPoint:
        """The commit: written only after the chunks it names are durable and indexed.

        If a prune may have run since this handle loaded its index (an index object it
        relies on is gone, or its lock was lost), every chunk the point reaches is verified
        against the index as it is now; a point with missing chunks is never written.
        """
        from strongroom.vault.commit import verify_before_commit

        failpoints.hit("after-index")
        self._unindexed.write(self.backend, self.keys, self.vault_id, self.index_names.add)
        for root in manifest.roots:
            if bytes.fromhex(root) not in self.index:
                raise VaultError(f"refusing to commit a point whose root {root[:16]} is not stored")
        verify_before_commit(self, manifest)
        stored = seal_object(MAGIC_POINT, self.keys.point_key, self.vault_id, manifest.encode())
        point = RecoveryPoint(object_name_hash(stored), manifest)
        with committing_point(manifest.source):  # a vault server records it (docs/server.md)
            self.backend.put(POINTS_PREFIX + point.point_id, stored)
        self.catalog.add_point(point)
        return point

    def points(self, strict: bool = True, include_deleted: bool = False) -> list[RecoveryPoint]:
        """Recovery points, oldest first; soft-deleted ones only with ``include_deleted``."""
        found = list(self.catalog.points(strict).values())
        if not include_deleted:
            hidden = self.catalog.tombstones()
            found = [p for p in found if p.point_id not in hidden]
        return sorted(found, key=lambda p: (p.manifest.time, p.point_id))

    def tombstones(self) -> dict[str, Tombstone]:
        """Soft-deleted points' tombstones by point id (only those that verify)."""
        return self.catalog.tombstones()

    def resolve_point(
        self,
        spec: str,
        *,
        source: str | None = None,
        kind: str | None = None,
        include_deleted: bool = False,
    ) -> RecoveryPoint:
        """A full id, a unique id prefix, or ``latest`` (newest, filtered by source and kind)."""
        candidates = [
            p
            for p in self.points(include_deleted=include_deleted)
            if (source is None or p.manifest.source == source)
            and (kind is None or p.manifest.kind == kind)
        ]
        if spec == "latest":
            if not candidates:
                raise PointNotFound(f"no recovery point{_filter_text(source, kind)}")
            return candidates[-1]
        spec = spec.lower()
        matches = [p for p in candidates if p.point_id.startswith(spec)]
        if not matches:
            hidden = [pid for pid in self.tombstones() if pid.startswith(spec) and spec]
            hint = (
                f" (soft-deleted point {hidden[0][:12]}: `strongroom undelete` brings it back)"
                if len(hidden) == 1 and not include_deleted
                else ""
            )
            raise PointNotFound(
                f"no recovery point matches {spec!r}{_filter_text(source, kind)}{hint}"
            )
        if len(matches) > 1:
            ids = ", ".join(p.short_id for p in matches[:5])
            raise AmbiguousPoint(
                f"{spec!r} matches {len(matches)} recovery points ({ids}); give more digits"
            )
        return matches[0]


def _filter_text(source: str | None, kind: str | None) -> str:
    parts = [f"source {source!r}" if source else "", f"kind {kind!r}" if kind else ""]
    text = " and ".join(p for p in parts if p)
    return f" for {text}" if text else ""
