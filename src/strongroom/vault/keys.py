"""Key slots: the random master secret wrapped by Argon2id(passphrase).

Every slot wraps the same master secret, so adding, removing or changing a passphrase never
re-encrypts data.  Slot objects live at ``keys/<slot id>`` as JSON.

This module loads no cipher library until a key is wrapped or unwrapped: the CLI derives the
passphrase's key (:meth:`SlotOpener.prepare`, a large transient allocation) before it loads
numpy and the engines, so that allocation adds to a small base.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import json
import os
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from strongroom.errors import (
    IntegrityError,
    KeySlotError,
    ObjectNotFound,
    StrongroomError,
    UnsupportedVersion,
    WrongPassphrase,
)
from strongroom.hostname import host_name
from strongroom.records import dataclass
from strongroom.vault.keyfile import slot_of

if TYPE_CHECKING:
    from strongroom.storage.backend import Backend

KEYS_PREFIX = "keys/"
KEYS_COPY_PREFIX = "keys-copy/"
"""Every slot is written twice, ``keys/<id>`` then ``keys-copy/<id>`` (docs/format.md §4)."""
# Argon2id cost bounds for stored slots and init: 8 KiB (Argon2's own minimum; the tests'
# slots use 1 MiB) up to 4 GiB, 1..100 passes, 1..64 lanes.
MIN_MEMORY_KIB = 8
MAX_MEMORY_KIB = 4 * 1024 * 1024
MAX_TIME_COST = 100
MAX_PARALLELISM = 64
_AAD = b"strongroom 2026-11 key slot v1"


@dataclass(frozen=True)
class KDFParams:
    """Argon2id cost for new key slots: 32 MiB, 4 passes, 2 lanes (``docs/format.md`` §4 says
    why).  A stored slot keeps the parameters it was made with."""

    time_cost: int = 4
    memory_kib: int = 32 * 1024
    parallelism: int = 2

    def out_of_bounds(self) -> str | None:
        """Why this cost is refused (a stored slot is skipped, ``init`` refuses it), or None.

        A slot's cost is read before anything authenticates it: unbounded, a damaged or
        hostile slot could ask for 2^40 KiB or a week of passes."""
        for what, value, low, high in (
            ("memory_kib", self.memory_kib, MIN_MEMORY_KIB, MAX_MEMORY_KIB),
            ("time_cost", self.time_cost, 1, MAX_TIME_COST),
            ("parallelism", self.parallelism, 1, MAX_PARALLELISM),
        ):
            if not low <= value <= high:
                return f"Argon2id {what} {value} is outside {low}..{high}"
        if self.memory_kib < 8 * self.parallelism:
            return f"Argon2id needs at least 8 KiB per lane, not {self.memory_kib} KiB"
        return None

    def derive(self, passphrase: str, salt: bytes) -> bytes:
        # here: a worker process gets its keys handed over and derives none (argon2 and
        # cffi are 0.4 MiB of each worker)
        from strongroom.vault.kdf import argon2id

        return argon2id(
            passphrase.encode("utf-8"),
            salt,
            time_cost=self.time_cost,
            memory_kib=self.memory_kib,
            parallelism=self.parallelism,
        )


KEY_FILE_KDF = KDFParams(time_cost=1, memory_kib=8, parallelism=1)
"""The cost of a key file's slot: Argon2id's minimum, since its secret is 256 random bits
(:mod:`strongroom.vault.keyfile` says why)."""


@dataclass(frozen=True)
class KeySlot:
    """One stored slot, as listed by ``strongroom key list``."""

    slot_id: str
    created: str
    host: str
    user: str
    label: str
    kdf: KDFParams

    @property
    def key_file(self) -> bool:
        """Whether the slot was made for a key file (its cost says so)."""
        return self.kdf == KEY_FILE_KDF


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _canonical(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, indent=1, sort_keys=True).encode("utf-8")


def _aad(vault_id: bytes, slot_id: str, doc: dict[str, object]) -> bytes:
    """Binds the slot's id and every field but the wrapped key itself: none can be altered."""
    meta = {k: v for k, v in doc.items() if k != "wrapped"}
    return _AAD + vault_id + slot_id.encode("ascii") + _canonical(meta)


def slot_ids(backend: Backend) -> list[str]:
    """Every slot id, from ``keys/`` and ``keys-copy/`` (a slot counts once), sorted."""
    ids = {info.name.rsplit("/", 1)[-1] for info in backend.list(KEYS_PREFIX)}
    ids |= {info.name.rsplit("/", 1)[-1] for info in backend.list(KEYS_COPY_PREFIX)}
    return sorted(ids)


def slot_versions(backend: Backend, slot_id: str) -> list[tuple[str, bytes]]:
    """The slot's stored forms, primary first; the copy only if it differs (or is alone)."""
    found: list[tuple[str, bytes]] = []
    for prefix in (KEYS_PREFIX, KEYS_COPY_PREFIX):
        try:
            stored = backend.get(prefix + slot_id)
        except ObjectNotFound:
            continue
        if not any(stored == other for _, other in found):
            found.append((prefix + slot_id, stored))
    return found


def write_slot(backend: Backend, slot_id: str, stored: bytes) -> None:
    """The primary, then the copy: a crash between leaves a good slot without its copy."""
    backend.put(KEYS_PREFIX + slot_id, stored)
    backend.put(KEYS_COPY_PREFIX + slot_id, stored)


def delete_slot(backend: Backend, slot_id: str) -> None:
    """The copy, then the primary: a crash between never leaves a copy that revives a removed
    slot on its own (a lone copy means a lost primary, and opens)."""
    for prefix in (KEYS_COPY_PREFIX, KEYS_PREFIX):
        with contextlib.suppress(ObjectNotFound):
            backend.delete(prefix + slot_id)


def new_slot(
    master: bytes,
    passphrase: str,
    vault_id: bytes,
    kdf: KDFParams,
    label: str = "",
    slot_id: str | None = None,
) -> tuple[KeySlot, bytes]:
    """A new slot for ``master`` and its stored bytes (``slot_id``: the id a key file names;
    by default a new random one)."""
    if not passphrase:
        raise KeySlotError("a key slot needs a non-empty passphrase")

    from strongroom.vault.aead import AesGcm
    from strongroom.vault.crypto import NONCE_SIZE

    slot_id = slot_id or os.urandom(8).hex()
    salt, nonce = os.urandom(16), os.urandom(NONCE_SIZE)
    slot = KeySlot(
        slot_id=slot_id,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        host=host_name(),
        user=getpass.getuser(),
        label=label,
        kdf=kdf,
    )
    doc: dict[str, object] = {
        "version": 1,
        "kdf": {"name": "argon2id", **asdict(kdf), "salt": _b64(salt)},
        "nonce": _b64(nonce),
        "created": slot.created,
        "host": slot.host,
        "user": slot.user,
        "label": label,
        "vault": vault_id.hex(),
    }
    problem = kdf.out_of_bounds()
    if problem:
        raise KeySlotError(f"refusing to make a key slot: {problem}")
    kek = kdf.derive(passphrase, salt)
    doc["wrapped"] = _b64(AesGcm(kek).encrypt(nonce, master, _aad(vault_id, slot_id, doc)))
    return slot, _canonical(doc)


def parse_slot(
    slot_id: str, stored: bytes, name: str | None = None
) -> tuple[KeySlot, dict[str, object]]:
    """A stored slot, checked: canonical form, known version, Argon2id cost within bounds."""
    name = name or KEYS_PREFIX + slot_id
    try:
        doc = json.loads(stored)
        kdf_doc = doc["kdf"]
        if not all(isinstance(doc[k], str) for k in ("created", "host", "user", "label")):
            raise ValueError("a field that must be text is not")
        if doc["version"] != 1 or kdf_doc["name"] != "argon2id":
            raise UnsupportedVersion(f"{name}: unsupported key slot version or KDF")
        kdf = KDFParams(
            time_cost=int(kdf_doc["time_cost"]),
            memory_kib=int(kdf_doc["memory_kib"]),
            parallelism=int(kdf_doc["parallelism"]),
        )
        slot = KeySlot(slot_id, doc["created"], doc["host"], doc["user"], doc["label"], kdf)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
        raise IntegrityError(f"{name}: unreadable key slot ({exc!r})", name=name) from None
    if _canonical(doc) != stored:
        raise IntegrityError(f"{name}: key slot was modified outside strongroom", name=name)
    problem = kdf.out_of_bounds()
    if problem:
        raise IntegrityError(f"{name}: not tried: {problem}", name=name)
    return slot, doc


def _parts(
    slot_id: str, stored: bytes, name: str | None = None
) -> tuple[KeySlot, dict[str, object], bytes, bytes, bytes]:
    """A slot, its document, and its salt, nonce and wrapped secret."""
    slot, doc = parse_slot(slot_id, stored, name)
    try:
        kdf_doc = doc["kdf"]
        if not isinstance(kdf_doc, dict):
            raise ValueError("kdf is not an object")
        salt = base64.b64decode(str(kdf_doc["salt"]), validate=True)
        nonce = base64.b64decode(str(doc["nonce"]), validate=True)
        wrapped = base64.b64decode(str(doc["wrapped"]), validate=True)
        if len(salt) < 8 or len(nonce) != 12 or len(wrapped) < 16:
            raise ValueError("salt, nonce or wrapped secret has the wrong size")
    except (ValueError, KeyError) as exc:
        where = name or KEYS_PREFIX + slot_id
        raise IntegrityError(f"{where}: unreadable key slot ({exc})", name=where) from None
    return slot, doc, salt, nonce, wrapped


def unwrap(
    slot_id: str,
    stored: bytes,
    passphrase: str,
    vault_id: bytes,
    *,
    opener: SlotOpener | None = None,
    name: str | None = None,
) -> bytes | None:
    """The master secret if ``passphrase`` opens this slot, else None.  ``opener``: derive
    the key-encryption key through its cache; ``name``: where the slot was read."""
    from strongroom.vault.aead import AesGcm, AuthenticationFailed
    from strongroom.vault.crypto import MASTER_SECRET_SIZE

    slot, doc, salt, nonce, wrapped = _parts(slot_id, stored, name)
    if opener is not None and isinstance(doc.get("vault"), str):
        opener.declared.add(str(doc["vault"]))
    kek = slot.kdf.derive(passphrase, salt) if opener is None else opener._kek(slot, salt)
    try:
        master = AesGcm(kek).decrypt(nonce, wrapped, _aad(vault_id, slot_id, doc))
    except AuthenticationFailed:
        return None
    if len(master) != MASTER_SECRET_SIZE:
        where = name or KEYS_PREFIX + slot_id
        raise IntegrityError(f"{where}: wrapped secret has the wrong size", name=where)
    return master


class SlotOpener:
    """Tries one passphrase on a vault's key slots, in slot id order (a key file's own slot
    first); what :meth:`Vault.open <strongroom.vault.Vault.open>` uses to find the master
    secret.

    Each slot is ``keys/<id>`` and its copy ``keys-copy/<id>``: the primary is tried first,
    the copy if the primary is missing, unreadable or does not open (a damaged wrapped key
    looks like a wrong passphrase).  A key is derived once per distinct salt and cost, so a
    copy identical to its primary costs nothing.  Slots that are skipped or opened from their
    copy are described in :attr:`notes`.  :meth:`prepare` derives the first slot's key ahead
    of time; :meth:`unlock` uses it."""

    def __init__(self, backend: Backend, passphrase: str) -> None:
        self.backend = backend
        self.passphrase = passphrase
        self.notes: list[str] = []
        self.opened: bytes = b""
        """The stored form of the slot that opened (``check --repair`` copies it)."""
        self.declared: set[str] = set()
        """Vault ids (hex) that the readable slots say they belong to (newer slots only)."""
        self._ids: list[str] | None = None
        self._keks: dict[tuple[bytes, KDFParams], bytes] = {}

    def _slot_ids(self) -> list[str]:
        """Slot ids in the order they are tried: id order, except that the slot a key file
        names comes first (the others would each cost a passphrase's derivation)."""
        if self._ids is None:
            ids = slot_ids(self.backend)
            named = slot_of(self.passphrase)
            if named in ids:
                ids.remove(named)
                ids.insert(0, named)
            self._ids = ids
        return self._ids

    def _kek(self, slot: KeySlot, salt: bytes) -> bytes:
        key = (salt, slot.kdf)
        if key not in self._keks:
            self._keks[key] = slot.kdf.derive(self.passphrase, salt)
        return self._keks[key]

    @property
    def derived(self) -> int:
        """How many keys were derived (each one Argon2id run at its slot's cost)."""
        return len(self._keks)

    def prepare(self) -> None:
        """Derive the first slot's key now.  Best effort: any problem (no vault, no slots, an
        unreadable slot, a storage error) is left for ``Vault.open`` and :meth:`unlock` to meet
        again and report in their order."""
        try:
            ids = self._slot_ids()
            if ids:
                name, stored = slot_versions(self.backend, ids[0])[0]
                slot, _, salt, _, _ = _parts(ids[0], stored, name)
                self._kek(slot, salt)
        except (StrongroomError, IndexError):
            self._ids = None

    def unlock(self, vault_id: bytes) -> tuple[bytes, str]:
        """The master secret and the id of the slot that opened with the passphrase."""
        ids = self._slot_ids()
        if not ids:
            raise IntegrityError("vault has no key slots (keys/ is empty)", name=KEYS_PREFIX)
        self.notes.clear()
        for slot_id in ids:
            master = self._try_slot(slot_id, vault_id)
            if master is not None:
                return master, slot_id
        skipped = f" ({'; '.join(self.notes)})" if self.notes else ""
        named = slot_of(self.passphrase)
        if named is not None and named not in ids:
            raise WrongPassphrase(
                f"the key file's slot {named} is not in this vault (removed, or another "
                f"vault's key file), and no other slot opens with it{skipped}"
            )
        raise WrongPassphrase(
            f"wrong passphrase: none of the vault's {len(ids)} key slot(s) opens with it{skipped}"
        )

    def _try_slot(self, slot_id: str, vault_id: bytes) -> bytes | None:
        failed: list[str] = []
        for name, stored in slot_versions(self.backend, slot_id):
            try:
                master = unwrap(slot_id, stored, self.passphrase, vault_id, opener=self, name=name)
            except IntegrityError as exc:
                failed.append(name)
                self.notes.append(f"skipped {exc}")
                continue
            if master is not None:
                self.opened = stored
                if failed or name != KEYS_PREFIX + slot_id:
                    self.notes.append(
                        f"{KEYS_PREFIX}{slot_id} is missing or damaged: opened with its copy "
                        f"{name} (`strongroom check --repair` restores it)"
                    )
                return master
            failed.append(name)
        return None
