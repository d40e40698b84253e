"""The Vault: one opened vault, its keys, index, chunks and recovery points.

The index, reader, writer and tree modules (numpy, the pack codec) are imported where they
are first used, after :meth:`Vault.open` has unwrapped the key: the passphrase's Argon2id
allocation then happens while little is loaded, which keeps each command's peak memory low.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import blake3

from strongroom import failpoints
from strongroom.errors import (
    AmbiguousPoint,
    IntegrityError,
    KeySlotError,
    ObjectNotFound,
    PointNotFound,
    ReadOnlyStorage,
    StorageFull,
    VaultError,
    VaultExists,
    WrongPassphrase,
)
from strongroom.storage.backend import Backend
from strongroom.storage.reserve import keep_reserve, with_reserve
from strongroom.storage.served import committing_point
from strongroom.vault import keys as keyslots
from strongroom.vault.catalog import LoadProblems, PointCatalog, Warn
from strongroom.vault.config import (
    CONFIG_COPY_NAME,
    CONFIG_NAME,
    StoredConfig,
    VaultConfig,
    VaultSettings,
    check_compression_level,
    choose_config,
    read_configs,
    write_config,
)
from strongroom.vault.crypto import MASTER_SECRET_SIZE, VaultKeys
from strongroom.vault.envelope import (
    MAGIC_POINT,
    object_name_hash,
    seal_object,
)
from strongroom.vault.indexload import IndexLoading
from strongroom.vault.keyfile import slot_of
from strongroom.vault.locks import (
    LockCodec,
    LockInfo,
    NoLock,
    VaultLock,
    default_wait,
    remove_stale_locks,
)
from strongroom.vault.points import POINTS_PREFIX, PointManifest, RecoveryPoint
from strongroom.vault.tombstones import Tombstone

if TYPE_CHECKING:
    from strongroom.vault.claims import ChunkClaims
    from strongroom.vault.handoff import VaultHandoff
    from strongroom.vault.writer import ChunkWriter, UnindexedPacks


class Vault(IndexLoading):
    """An opened vault.  Build with :meth:`init` or :meth:`open`."""

    def __init__(
        self, backend: Backend, config: VaultConfig, keys: VaultKeys, slot_id: str
    ) -> None:
        self.backend = backend
        self.config = config
        self.keys = keys
        self.slot_id = slot_id
        self._problems = LoadProblems()
        self.slot_stored = b""
        """The stored form of the key slot that opened this handle (it verified)."""
        self.strict = True
        """Whether objects that fail to verify raise (True) or are skipped and reported."""
        self.catalog = PointCatalog(backend, keys, config.vault_id, self._problems)
        self._lock_codec = LockCodec(keys.lock_key, config.vault_id)
        self._init_index()
        self._unindexed: UnindexedPacks | None = None  # made with the first writer
        self._held: set[VaultLock] = set()

    @property
    def vault_id(self) -> bytes:
        return self.config.vault_id

    def local_cache_key(self, scope: str) -> bytes:
        """A 32-byte key for authenticating a cache kept on this machine (never written to the
        vault), one per ``scope``: a tampered or damaged cache then costs a re-read, never a
        wrong point."""
        return blake3.blake3(scope.encode(), key=self.keys.local_cache_key).digest()

    def handoff(self) -> VaultHandoff | None:
        """What a worker process needs to open this vault without the passphrase, or ``None``
        when its storage cannot be opened by path from another process
        (``vault/handoff.py``)."""
        from strongroom.vault.handoff import VaultHandoff

        root = self.capabilities.local_root
        if root is None:
            return None
        return VaultHandoff(str(root), self.keys.master, self.slot_id, self.config)

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
        for name in (CONFIG_NAME, CONFIG_COPY_NAME):
            try:
                backend.stat(name)
            except ObjectNotFound:
                continue
            raise VaultExists(f"{backend.describe()} already holds a vault")
        settings = settings or VaultSettings()
        check_compression_level(settings.compression_level)
        master = os.urandom(MASTER_SECRET_SIZE)
        config = VaultConfig.new(os.urandom(16), settings)
        keys = VaultKeys.from_master(master)
        slot, stored = keyslots.new_slot(
            master, passphrase, config.vault_id, kdf or keyslots.KDFParams(), label
        )
        keyslots.write_slot(backend, slot.slot_id, stored)
        write_config(backend, config.serialize(keys))
        vault = cls(backend, config, keys, slot.slot_id)
        vault.slot_stored = stored
        vault.catalog.start_empty()
        return vault

    @classmethod
    def open(
        cls,
        backend: Backend,
        passphrase: str | keyslots.SlotOpener,
        *,
        strict: bool = True,
        warn: Warn | None = None,
        lazy_index: bool = False,
    ) -> Vault:
        """Open with ``passphrase`` (or a :class:`~strongroom.vault.keys.SlotOpener` holding
        it).  ``strict=False`` skips index objects, recovery points and tombstones that fail
        to verify (a junk, foreign or misnamed object) instead of failing, records them in
        :attr:`problems` and reports each once to ``warn``.  ``lazy_index`` defers loading
        the chunk index to its first use (a command that lists points never needs it)."""
        found, _ = read_configs(backend)
        opener = (
            passphrase
            if isinstance(passphrase, keyslots.SlotOpener)
            else keyslots.SlotOpener(backend, passphrase)
        )
        master, slot_id, vault_id = _unlock(opener, found)
        keys = VaultKeys.from_master(master)
        say = warn or _quiet
        config = choose_config(found, vault_id, keys, say).config
        for note in opener.notes:
            say(note)
        vault = cls(backend, config, keys, slot_id)
        vault.strict = strict
        vault.slot_stored = opener.opened
        vault._problems.warn = warn
        if not lazy_index:
            vault._load_once()
        return vault

    def refresh_config(self) -> VaultConfig:
        """Read ``config`` again (another client may have changed the settings); its copy
        if the primary is missing or damaged."""
        found, _ = read_configs(self.backend)
        if not any(c.config.vault_id == self.vault_id for c in found):
            raise IntegrityError("config: the vault id changed", name=CONFIG_NAME)
        self.config = choose_config(found, self.vault_id, self.keys, _quiet).config
        return self.config

    def close(self) -> None:
        self.backend.close()

    # --- keys ------------------------------------------------------------------------------

    def list_keys(self) -> list[keyslots.KeySlot]:
        """Every slot once (a slot is ``keys/<id>`` and its copy ``keys-copy/<id>``)."""
        found = []
        for slot_id in keyslots.slot_ids(self.backend):
            versions = keyslots.slot_versions(self.backend, slot_id)
            for position, (name, stored) in enumerate(versions):
                try:
                    found.append(keyslots.parse_slot(slot_id, stored, name)[0])
                    break
                except IntegrityError:
                    if position == len(versions) - 1:
                        raise
        return sorted(found, key=lambda s: s.created)

    def add_key(
        self, passphrase: str, kdf: keyslots.KDFParams | None = None, label: str = ""
    ) -> str:
        slot, stored = keyslots.new_slot(
            self.keys.master, passphrase, self.vault_id, kdf or keyslots.KDFParams(), label
        )
        keyslots.write_slot(self.backend, slot.slot_id, stored)
        return slot.slot_id

    def add_key_file(self, text: str, label: str = "key file") -> str:
        """Add the slot a key file's line opens (made by ``vault.keyfile.new_key_text``, and
        stored by the caller first, so that no slot exists without its file)."""
        slot_id = slot_of(text)
        if slot_id is None:
            raise KeySlotError("not a key file line (strongroom-key 1 <slot id> <secret>)")
        if slot_id in keyslots.slot_ids(self.backend):
            raise KeySlotError(f"the vault already has a key slot {slot_id}")
        slot, stored = keyslots.new_slot(
            self.keys.master, text, self.vault_id, keyslots.KEY_FILE_KDF, label, slot_id
        )
        keyslots.write_slot(self.backend, slot.slot_id, stored)
        return slot.slot_id

    def remove_key(self, slot_id: str) -> None:
        ids = set(keyslots.slot_ids(self.backend))
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
        keyslots.delete_slot(self.backend, slot_id)

    def change_passphrase(self, new_passphrase: str, kdf: keyslots.KDFParams | None = None) -> str:
        """Add a slot for the new passphrase, then remove the one in use (not a key file's:
        its holder would be left with a file that opens nothing, and a passphrase in its
        place that nobody chose for that host)."""
        old = self.slot_id
        current = next((s for s in self.list_keys() if s.slot_id == old), None)
        if current is not None and current.key_file:
            raise KeySlotError(
                "the vault was opened with a key file: make a new one with `key add "
                f"--new-key-file`, then `key remove {old}`"
            )
        label = current.label if current is not None else ""
        self.slot_id = self.add_key(new_passphrase, kdf, label)
        keyslots.delete_slot(self.backend, old)
        return self.slot_id

    # --- chunks ----------------------------------------------------------------------------

    def writer(
        self, upload_workers: int | None = None, claims: ChunkClaims | None = None
    ) -> ChunkWriter:
        """A chunk writer; by default with as many upload threads as the storage is worth
        (one for a local vault: a local write is fast, and each uploader holds a pack
        buffer; four for object storage).  ``claims``: shared with the other processes of
        one backup, so that only one of them stores a chunk (``claims.py``)."""
        from strongroom.vault.writer import ChunkWriter, UnindexedPacks

        if upload_workers is None:
            upload_workers = self.capabilities.upload_workers
        s = self.config.settings
        with self._index_mutex:  # writers of one vault share it: never make two
            if self._unindexed is None:
                self._unindexed = UnindexedPacks()
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
            claims=claims,
        )

    @staticmethod
    def put_tree(writer: ChunkWriter, refs: Sequence[bytes], body: bytes) -> bytes:
        from strongroom.vault.trees import encode_tree
        from strongroom.vault.writer import CHUNK_TREE

        return writer.put(encode_tree(refs, body), CHUNK_TREE).chunk_id

    def read_tree(self, chunk_id: bytes) -> tuple[list[bytes], bytes]:
        from strongroom.vault.trees import decode_tree

        return decode_tree(self.read_chunk(chunk_id))

    # Reading without a lock: class-level defaults, set per handle by the CLI.
    skip_read_locks: bool = False
    """:meth:`read_lock` takes no lock at all (``--no-lock``)."""
    on_no_lock: Callable[[str], None] | None = None
    """Told (once per handle) why a reading command goes on without a lock."""
    _told_no_lock: bool = False

    def lock(
        self,
        exclusive: bool = False,
        wait: float | None = None,
        *,
        use_reserve: float | None = None,
    ) -> VaultLock:
        """Shared (backup) or exclusive (prune, repair) lock for a command that writes; use
        as a context.  Commands that only read take :meth:`read_lock` instead.

        ``wait`` is how many seconds to wait for a conflicting lock to go away; by default the
        ``STRONGROOM_LOCK_WAIT`` environment variable, else 0 (fail at once).  With
        ``use_reserve`` (the share of it to keep) a full disk gives up some of a local vault's
        reserve for the lock (prune 0, forget 0.5); otherwise a shared lock (a backup) tops the
        reserve up (``storage/reserve.py``).
        """
        try:
            lock = self._acquire(exclusive, wait, use_reserve)
        except ReadOnlyStorage as exc:
            raise ReadOnlyStorage(
                f"the vault is read-only ({exc}); this command writes to it, reading commands "
                "work without a lock",
                name=exc.name,
            ) from None
        if not exclusive and use_reserve is None:
            keep_reserve(self.backend)
        return lock

    def read_lock(self, wait: float | None = None) -> VaultLock | NoLock:
        """A shared lock for a command that only reads, or none (:class:`NoLock`) when told
        so (``skip_read_locks``) or when the storage takes no writes or is full: reading
        must work on a read-only mount or a full disk.  Never touches the reserve."""
        if self.skip_read_locks:
            return NoLock("--no-lock")
        try:
            return self._acquire(False, wait, None)
        except (ReadOnlyStorage, StorageFull) as exc:
            reason = f"{exc}"
        if self.on_no_lock is not None and not self._told_no_lock:
            self._told_no_lock = True
            self.on_no_lock(f"reading without a lock ({reason}); do not prune meanwhile")
        return NoLock(reason)

    def _acquire(self, exclusive: bool, wait: float | None, use_reserve: float | None) -> VaultLock:
        lock = VaultLock(self.backend, self._lock_codec, exclusive, on_release=self._held.discard)
        acquire = partial(lock.acquire, default_wait() if wait is None else wait)
        if use_reserve is None:
            acquire()
        else:
            with_reserve(self.backend, acquire, use_reserve)
        self._held.add(lock)
        return lock

    def held_locks(self) -> list[VaultLock]:
        return list(self._held)

    def remove_stale_locks(self) -> list[LockInfo]:
        """Delete locks whose holders are gone or silent (leaves evidence for them to find)."""
        return remove_stale_locks(self.backend, self._lock_codec)

    # --- recovery points -------------------------------------------------------------------

    points_committed: int = 0
    """Points this handle has written (an interrupted backup says whether it committed)."""

    def save_point(self, manifest: PointManifest) -> RecoveryPoint:
        """The commit: written only after the chunks it names are durable and indexed.

        If a prune may have run since this handle loaded its index (an index object it
        relies on is gone, or its lock was lost), every chunk the point reaches is verified
        against the index as it is now; a point with missing chunks is never written.
        """
        from strongroom.vault.commit import verify_before_commit

        failpoints.hit("after-index")
        if self._unindexed is not None:
            self._unindexed.write(self.backend, self.keys, self.vault_id, self.index_names.add)
        for root in manifest.roots:
            if bytes.fromhex(root) not in self.index:
                raise VaultError(f"refusing to commit a point whose root {root[:16]} is not stored")
        verify_before_commit(self, manifest)
        stored = seal_object(MAGIC_POINT, self.keys.point_key, self.vault_id, manifest.encode())
        point = RecoveryPoint(object_name_hash(stored), manifest)
        # a vault server records the source, and shows the plain facts (docs/server.md)
        with committing_point(manifest.source, manifest.plain_facts()):
            self.backend.put(POINTS_PREFIX + point.point_id, stored)
        self.points_committed += 1
        self.catalog.add_point(point)
        return point

    def points(
        self, strict: bool | None = None, include_deleted: bool = False
    ) -> list[RecoveryPoint]:
        """Recovery points, oldest first; soft-deleted ones only with ``include_deleted``.
        ``strict`` (by default as the vault was opened): raise on an unreadable point object
        instead of skipping it."""
        found = list(self.catalog.points(self.strict if strict is None else strict).values())
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


def _quiet(_: str) -> None:
    """Where warnings go when nobody listens."""


def _unlock(opener: keyslots.SlotOpener, found: list[StoredConfig]) -> tuple[bytes, str, bytes]:
    """The master secret, the slot that opened and the vault id it opened for: each copy's
    vault id in turn (a damaged or foreign primary may name another vault)."""
    ids = list(dict.fromkeys(c.config.vault_id for c in found))
    wrong: WrongPassphrase | None = None
    for vault_id in ids:
        try:
            master, slot_id = opener.unlock(vault_id)
        except WrongPassphrase as exc:
            wrong = wrong or exc
            continue
        return master, slot_id, vault_id
    declared = opener.declared
    if declared and not declared & {v.hex() for v in ids}:
        raise IntegrityError(
            f"{CONFIG_NAME} belongs to vault {ids[0].hex()[:12]}, but the key slots to vault "
            f"{min(declared)[:12]}: a config of another vault was put here (swapped or copied "
            "in); put this vault's own config back",
            name=CONFIG_NAME,
        )
    assert wrong is not None
    raise wrong


def _filter_text(source: str | None, kind: str | None) -> str:
    parts = [f"source {source!r}" if source else "", f"kind {kind!r}" if kind else ""]
    text = " and ".join(p for p in parts if p)
    return f" for {text}" if text else ""
