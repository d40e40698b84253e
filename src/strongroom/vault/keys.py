"""Key slots: the random master secret wrapped by Argon2id(passphrase).

Every slot wraps the same master secret, so adding, removing or changing a passphrase never
re-encrypts data.  Slot objects live at ``keys/<slot id>`` as JSON.

This module loads no cipher library until a key is wrapped or unwrapped: the CLI derives the
passphrase's key (:meth:`SlotOpener.prepare`, a large transient allocation) before it loads
cryptography, numpy and the engines, so that allocation adds to a small base.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from argon2.low_level import Type, hash_secret_raw

from strongroom.errors import IntegrityError, KeySlotError, UnsupportedVersion, WrongPassphrase

if TYPE_CHECKING:
    from strongroom.storage.backend import Backend

KEYS_PREFIX = "keys/"
_AAD = b"strongroom 2026-11 key slot v1"


@dataclass(frozen=True)
class KDFParams:
    """Argon2id cost for new key slots: 32 MiB, 4 passes, 2 lanes (``docs/format.md`` §4 says
    why).  A stored slot keeps the parameters it was made with."""

    time_cost: int = 4
    memory_kib: int = 32 * 1024
    parallelism: int = 2

    def derive(self, passphrase: str, salt: bytes) -> bytes:
        return hash_secret_raw(
            passphrase.encode("utf-8"),
            salt,
            time_cost=self.time_cost,
            memory_cost=self.memory_kib,
            parallelism=self.parallelism,
            hash_len=32,
            type=Type.ID,
        )


@dataclass(frozen=True)
class KeySlot:
    """One stored slot, as listed by ``strongroom key list``."""

    slot_id: str
    created: str
    host: str
    user: str
    label: str
    kdf: KDFParams


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _canonical(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, indent=1, sort_keys=True).encode("utf-8")


def _aad(vault_id: bytes, slot_id: str, doc: dict[str, object]) -> bytes:
    """Binds the slot's id and every field but the wrapped key itself: none can be altered."""
    meta = {k: v for k, v in doc.items() if k != "wrapped"}
    return _AAD + vault_id + slot_id.encode("ascii") + _canonical(meta)


def new_slot(
    master: bytes, passphrase: str, vault_id: bytes, kdf: KDFParams, label: str = ""
) -> tuple[KeySlot, bytes]:
    """A new slot for ``master`` and its stored bytes."""
    if not passphrase:
        raise KeySlotError("a key slot needs a non-empty passphrase")
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from strongroom.vault.crypto import NONCE_SIZE

    slot_id = os.urandom(8).hex()
    salt, nonce = os.urandom(16), os.urandom(NONCE_SIZE)
    slot = KeySlot(
        slot_id=slot_id,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        host=socket.gethostname(),
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
    }
    kek = kdf.derive(passphrase, salt)
    doc["wrapped"] = _b64(AESGCM(kek).encrypt(nonce, master, _aad(vault_id, slot_id, doc)))
    return slot, _canonical(doc)


def parse_slot(slot_id: str, stored: bytes) -> tuple[KeySlot, dict[str, object]]:
    name = KEYS_PREFIX + slot_id
    try:
        doc = json.loads(stored)
        kdf_doc = doc["kdf"]
        if doc["version"] != 1 or kdf_doc["name"] != "argon2id":
            raise UnsupportedVersion(f"{name}: unsupported key slot version or KDF")
        kdf = KDFParams(
            time_cost=int(kdf_doc["time_cost"]),
            memory_kib=int(kdf_doc["memory_kib"]),
            parallelism=int(kdf_doc["parallelism"]),
        )
        slot = KeySlot(slot_id, doc["created"], doc["host"], doc["user"], doc["label"], kdf)
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{name}: unreadable key slot ({exc})", name=name) from None
    if _canonical(doc) != stored:
        raise IntegrityError(f"{name}: key slot was modified outside strongroom", name=name)
    return slot, doc


def _parts(slot_id: str, stored: bytes) -> tuple[KeySlot, dict[str, object], bytes, bytes, bytes]:
    """A slot, its document, and its salt, nonce and wrapped secret."""
    slot, doc = parse_slot(slot_id, stored)
    try:
        kdf_doc = doc["kdf"]
        assert isinstance(kdf_doc, dict)
        salt = base64.b64decode(kdf_doc["salt"])
        nonce = base64.b64decode(str(doc["nonce"]))
        wrapped = base64.b64decode(str(doc["wrapped"]))
    except (ValueError, KeyError, AssertionError) as exc:
        raise IntegrityError(f"keys/{slot_id}: unreadable key slot ({exc})") from None
    return slot, doc, salt, nonce, wrapped


def derive_kek(slot_id: str, stored: bytes, passphrase: str) -> bytes:
    """The key-encryption key ``passphrase`` gives for this slot (its Argon2id parameters)."""
    slot, _, salt, _, _ = _parts(slot_id, stored)
    return slot.kdf.derive(passphrase, salt)


def unwrap(
    slot_id: str, stored: bytes, passphrase: str, vault_id: bytes, *, kek: bytes | None = None
) -> bytes | None:
    """The master secret if ``passphrase`` opens this slot, else None.  ``kek``: the slot's
    key-encryption key if :func:`derive_kek` has made it already."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from strongroom.vault.crypto import MASTER_SECRET_SIZE

    slot, doc, salt, nonce, wrapped = _parts(slot_id, stored)
    if kek is None:
        kek = slot.kdf.derive(passphrase, salt)
    try:
        master = AESGCM(kek).decrypt(nonce, wrapped, _aad(vault_id, slot_id, doc))
    except InvalidTag:
        return None
    if len(master) != MASTER_SECRET_SIZE:
        raise IntegrityError(f"keys/{slot_id}: wrapped secret has the wrong size")
    return master


class SlotOpener:
    """Tries one passphrase on a vault's key slots, in slot id order; what
    :meth:`Vault.open <strongroom.vault.Vault.open>` uses to find the master secret.

    :meth:`prepare` derives the first slot's key ahead of time; :meth:`unlock` uses it."""

    def __init__(self, backend: Backend, passphrase: str) -> None:
        self.backend = backend
        self.passphrase = passphrase
        self._names: list[str] | None = None
        self._prepared: tuple[str, bytes, bytes] | None = None  # slot name, stored, kek

    def _slot_names(self) -> list[str]:
        if self._names is None:
            self._names = sorted(info.name for info in self.backend.list(KEYS_PREFIX))
        return self._names

    def prepare(self) -> None:
        """Derive the first slot's key now.  Best effort: any problem (no vault, no slots, an
        unreadable slot, a storage error) is left for ``Vault.open`` and :meth:`unlock` to meet
        again and report in their order."""
        try:
            names = self._slot_names()
            if names:
                stored = self.backend.get(names[0])
                kek = derive_kek(names[0].rsplit("/", 1)[-1], stored, self.passphrase)
                self._prepared = (names[0], stored, kek)
        except Exception:
            self._names = None

    def unlock(self, vault_id: bytes) -> tuple[bytes, str]:
        """The master secret and the id of the slot that opened with the passphrase."""
        names = self._slot_names()
        if not names:
            raise IntegrityError("vault has no key slots (keys/ is empty)", name=KEYS_PREFIX)
        prepared, self._prepared = self._prepared, None
        for name in names:
            slot_id = name.rsplit("/", 1)[-1]
            if prepared is not None and prepared[0] == name:
                master = unwrap(slot_id, prepared[1], self.passphrase, vault_id, kek=prepared[2])
            else:
                master = unwrap(slot_id, self.backend.get(name), self.passphrase, vault_id)
            if master is not None:
                return master, slot_id
        raise WrongPassphrase(
            f"wrong passphrase: none of the vault's {len(names)} key slot(s) opens with it"
        )
