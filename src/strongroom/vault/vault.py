"""The Vault: one opened vault, its keys, index, chunks and recovery points."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from strongroom.errors import (
    AmbiguousPoint,
    IntegrityError,
    KeySlotError,
    NotAVault,
    ObjectNotFound,
    PointNotFound,
    VaultError,
    VaultExists,
    WrongPassphrase,
)
from strongroom.storage.backend import Backend
from strongroom.vault import keys as keyslots
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
    seal_object,
)
from strongroom.vault.index import ChunkIndex, decode_index
from strongroom.vault.locks import LockCodec, VaultLock
from strongroom.vault.points import POINTS_PREFIX, PointManifest, RecoveryPoint, decode_manifest
from strongroom.vault.reader import ChunkReader
from strongroom.vault.trees import decode_tree, encode_tree
from strongroom.vault.writer import CHUNK_TREE, INDEX_PREFIX, ChunkWriter

T = TypeVar("T")
_LOAD_WORKERS = 8


@dataclass
class LoadProblems:
    """Objects that failed to load when opening leniently (for ``check``)."""

    index: list[IntegrityError] = field(default_factory=list)
    points: list[IntegrityError] = field(default_factory=list)


def _parallel(fn: Callable[[str], T], names: Sequence[str]) -> list[T]:
    if len(names) < 2:
        return [fn(n) for n in names]
    with ThreadPoolExecutor(_LOAD_WORKERS) as pool:
        return list(pool.map(fn, names))


class Vault:
    """An opened vault.  Build with :meth:`init` or :meth:`open`."""

    def __init__(
        self, backend: Backend, config: VaultConfig, keys: VaultKeys, slot_id: str
    ) -> None:
        self.backend = backend
        self.config = config
        self.keys = keys
        self.slot_id = slot_id
        self.index = ChunkIndex()
        self.problems = LoadProblems()
        self._points: dict[str, RecoveryPoint] | None = None
        self.reader = ChunkReader(backend, keys, self.index)
        self._lock_codec = LockCodec(keys.lock_key, config.vault_id)

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
        vault._points = {}
        return vault

    @classmethod
    def open(cls, backend: Backend, passphrase: str, *, strict: bool = True) -> Vault:
        """Open with ``passphrase``; ``strict=False`` records unreadable index objects instead."""
        try:
            stored = backend.get(CONFIG_NAME)
        except ObjectNotFound:
            raise NotAVault(f"{backend.describe()} is not a strongroom vault (no config)") from None
        config, doc = parse_config(stored, backend.describe())
        master, slot_id = cls._unlock(backend, passphrase, config.vault_id)
        keys = VaultKeys.from_master(master)
        verify_config_mac(doc, stored, keys)
        vault = cls(backend, config, keys, slot_id)
        vault._load_index(strict)
        return vault

    @staticmethod
    def _unlock(backend: Backend, passphrase: str, vault_id: bytes) -> tuple[bytes, str]:
        slots = [info.name for info in backend.list(keyslots.KEYS_PREFIX)]
        if not slots:
            raise IntegrityError("vault has no key slots (keys/ is empty)", name="keys/")
        for name in sorted(slots):
            slot_id = name.rsplit("/", 1)[-1]
            master = keyslots.unwrap(slot_id, backend.get(name), passphrase, vault_id)
            if master is not None:
                return master, slot_id
        raise WrongPassphrase(
            f"wrong passphrase: none of the vault's {len(slots)} key slot(s) opens with it"
        )

    def _load_index(self, strict: bool) -> None:
        names = [info.name for info in self.backend.list(INDEX_PREFIX)]

        def load(name: str) -> IntegrityError | None:
            try:
                stored = self.backend.get(name)
                check_content_name(name, stored)
                plain = open_object(
                    MAGIC_INDEX, self.keys.index_key, self.vault_id, stored, name=name
                )
                packs, _ = decode_index(plain, name)
            except ObjectNotFound:
                return IntegrityError(f"{name}: vanished while loading", name=name)
            except IntegrityError as exc:
                return exc
            for rec in packs:
                self.index.add_pack(rec.pack_id, rec.salt, rec.entries, bulk=True)
            return None

        for problem in _parallel(load, names):
            if problem is not None:
                if strict:
                    raise problem
                self.problems.index.append(problem)
        self.index.finish_bulk()

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

    def writer(self, upload_workers: int = 2) -> ChunkWriter:
        s = self.config.settings
        return ChunkWriter(
            self.backend,
            self.keys,
            self.vault_id,
            self.index,
            pack_size=s.pack_size,
            compression_level=s.compression_level,
            upload_workers=upload_workers,
        )

    def read_chunk(self, chunk_id: bytes) -> bytes:
        return self.reader.read(chunk_id)

    @staticmethod
    def put_tree(writer: ChunkWriter, refs: Sequence[bytes], body: bytes) -> bytes:
        return writer.put(encode_tree(refs, body), CHUNK_TREE).chunk_id

    def read_tree(self, chunk_id: bytes) -> tuple[list[bytes], bytes]:
        return decode_tree(self.read_chunk(chunk_id))

    def lock(self, exclusive: bool = False, wait: float = 0.0) -> VaultLock:
        lock = VaultLock(self.backend, self._lock_codec, exclusive)
        lock.acquire(wait)
        return lock

    # --- recovery points -------------------------------------------------------------------

    def save_point(self, manifest: PointManifest) -> RecoveryPoint:
        """The commit: written only after the chunks it names are durable and indexed."""
        for root in manifest.roots:
            if bytes.fromhex(root) not in self.index:
                raise VaultError(f"refusing to commit a point whose root {root[:16]} is not stored")
        stored = seal_object(MAGIC_POINT, self.keys.point_key, self.vault_id, manifest.encode())
        point = RecoveryPoint(object_name_hash(stored), manifest)
        self.backend.put(POINTS_PREFIX + point.point_id, stored)
        if self._points is not None:
            self._points[point.point_id] = point
        return point

    def _load_point(self, name: str) -> RecoveryPoint:
        stored = self.backend.get(name)
        check_content_name(name, stored)
        plain = open_object(MAGIC_POINT, self.keys.point_key, self.vault_id, stored, name=name)
        return RecoveryPoint(name.rsplit("/", 1)[-1], decode_manifest(plain, name))

    def points(self, strict: bool = True) -> list[RecoveryPoint]:
        """Every recovery point, oldest first."""
        if self._points is None:
            names = [info.name for info in self.backend.list(POINTS_PREFIX)]

            def load(name: str) -> RecoveryPoint | IntegrityError:
                try:
                    return self._load_point(name)
                except IntegrityError as exc:
                    return exc

            loaded: dict[str, RecoveryPoint] = {}
            for item in _parallel(load, names):
                if isinstance(item, IntegrityError):
                    if strict:
                        raise item
                    self.problems.points.append(item)
                else:
                    loaded[item.point_id] = item
            self._points = loaded
        return sorted(self._points.values(), key=lambda p: (p.manifest.time, p.point_id))

    def resolve_point(
        self, spec: str, *, source: str | None = None, kind: str | None = None
    ) -> RecoveryPoint:
        """A full id, a unique id prefix, or ``latest`` (newest, filtered by source and kind)."""
        candidates = [
            p
            for p in self.points()
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
            raise PointNotFound(f"no recovery point matches {spec!r}{_filter_text(source, kind)}")
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
