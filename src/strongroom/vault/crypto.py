"""Keys and authenticated encryption for the vault (format v1).

All secrets derive from one 32-byte master secret with BLAKE3's key-derivation mode, one
context string per purpose, so a key used for one purpose never serves another.
"""

from __future__ import annotations

import os

import blake3

from strongroom.errors import IntegrityError
from strongroom.records import dataclass
from strongroom.vault.aead import AesGcm, AuthenticationFailed

MASTER_SECRET_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
ID_SIZE = 32

_CONTEXTS = {
    "chunk-id": "strongroom 2026-11 vault v1 chunk id",
    "pack": "strongroom 2026-11 vault v1 pack data",
    "index": "strongroom 2026-11 vault v1 index object",
    "point": "strongroom 2026-11 vault v1 recovery point",
    "lock": "strongroom 2026-11 vault v1 lock object",
    "config": "strongroom 2026-11 vault v1 config mac",
    # never stored in the vault: authenticates caches kept on the client (the files cache)
    "local-cache": "strongroom 2026-11 vault v1 local cache mac",
}


def derive_subkey(master: bytes, purpose: str) -> bytes:
    """The 32-byte subkey for ``purpose`` (a key of ``_CONTEXTS``)."""
    return blake3.blake3(master, derive_key_context=_CONTEXTS[purpose]).digest()


@dataclass(frozen=True)
class VaultKeys:
    """Every subkey of an opened vault; built once from the master secret."""

    master: bytes
    id_key: bytes
    pack_key: bytes
    index_key: bytes
    point_key: bytes
    lock_key: bytes
    config_key: bytes
    local_cache_key: bytes

    @classmethod
    def from_master(cls, master: bytes) -> VaultKeys:
        if len(master) != MASTER_SECRET_SIZE:
            raise ValueError("master secret must be 32 bytes")
        return cls(
            master=master,
            id_key=derive_subkey(master, "chunk-id"),
            pack_key=derive_subkey(master, "pack"),
            index_key=derive_subkey(master, "index"),
            point_key=derive_subkey(master, "point"),
            lock_key=derive_subkey(master, "lock"),
            config_key=derive_subkey(master, "config"),
            local_cache_key=derive_subkey(master, "local-cache"),
        )

    def chunk_id(self, data: bytes | bytearray | memoryview) -> bytes:
        """Keyed BLAKE3 of the plaintext: ids reveal nothing to anyone without the key."""
        return blake3.blake3(data, key=self.id_key).digest()

    def pack_cipher(self, salt: bytes) -> AesGcm:
        """The per-pack AES-256-GCM key: random nonces stay far below the collision bound."""
        return AesGcm(blake3.blake3(salt, key=self.pack_key).digest())

    def mac(self, data: bytes) -> bytes:
        return blake3.blake3(data, key=self.config_key).digest()


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def unseal(key: bytes, sealed: bytes | memoryview, aad: bytes, *, name: str) -> bytes:
    """Open ``nonce || AES-256-GCM ciphertext || tag`` (a sealed object after its prefix,
    ``envelope.seal_object``); an :class:`IntegrityError` naming ``name`` on any mismatch."""
    if len(sealed) < NONCE_SIZE + TAG_SIZE:
        raise IntegrityError(f"{name}: truncated (only {len(sealed)} bytes)", name=name)
    view = memoryview(sealed)
    try:
        return AesGcm(key).decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], aad)
    except AuthenticationFailed:
        raise IntegrityError(
            f"{name}: authentication failed (corrupted, tampered with, or not written with "
            "this vault's key)",
            name=name,
        ) from None
