"""AES-256-GCM, the vault's one cipher, behind one small surface.

Two implementations give the same bytes (tests/vault/test_aead.py):

- ``strongroom.vault._gcm`` (``_gcm.c``): the system's libcrypto, which Python has loaded
  already; importing it costs nothing.  Used where it was built and libcrypto was found.
- the ``cryptography`` package otherwise.  Importing it costs a process 8.5 MiB of memory
  and 15 ms of CPU, which is why it is not the first choice: a tree's backup or restore is
  two processes, and small trees' backups are mostly fixed cost.

Per byte, Debian 12's OpenSSL 3.0 encrypts at about 4.6 GB/s on this kind of machine
against the 9-17 GB/s of the OpenSSL 3.5 that cryptography's wheel links in (VAES): about
0.15 CPU seconds more per GiB stored, a few per cent of what a GiB's backup costs.
``STRONGROOM_AEAD=cryptography`` picks the package regardless (measurements, tests).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeAlias

Buffer: TypeAlias = bytes | bytearray | memoryview

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16

# (key, nonce, data, aad) -> ciphertext || tag; the same into a buffer; (key, nonce,
# sealed, aad) -> plaintext, or None when it is not authentic
Encrypt: TypeAlias = Callable[[bytes, Buffer, Buffer, Buffer], bytes]
EncryptInto: TypeAlias = Callable[[bytes, Buffer, Buffer, Buffer, memoryview], None]
Decrypt: TypeAlias = Callable[[bytes, Buffer, Buffer, Buffer], "bytes | None"]


class AuthenticationFailed(Exception):
    """The ciphertext, its additional data, nonce or key do not match: corrupted or forged."""


def libcrypto() -> tuple[Encrypt, EncryptInto, Decrypt]:
    """The compiled implementation; ImportError where it was not built or has no libcrypto."""
    from strongroom.vault import _gcm

    return _gcm.encrypt, _gcm.encrypt_into, _gcm.decrypt


def cryptography() -> tuple[Encrypt, EncryptInto, Decrypt]:
    """The same through the ``cryptography`` package."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    # cryptography accepts nonces of 8 to 128 bytes and longer output buffers
    def check(nonce: Buffer) -> None:
        if len(nonce) != NONCE_SIZE:
            raise ValueError("the nonce is 12 bytes")

    def encrypt(key: bytes, nonce: Buffer, data: Buffer, aad: Buffer) -> bytes:
        check(nonce)
        return AESGCM(key).encrypt(nonce, data, aad)

    def encrypt_into(key: bytes, nonce: Buffer, data: Buffer, aad: Buffer, out: memoryview) -> None:
        check(nonce)
        if len(out) != len(data) + TAG_SIZE:
            raise ValueError("the output buffer must be len(data) + 16 bytes")
        AESGCM(key).encrypt_into(nonce, data, aad, out)

    def decrypt(key: bytes, nonce: Buffer, sealed: Buffer, aad: Buffer) -> bytes | None:
        check(nonce)
        try:
            return AESGCM(key).decrypt(nonce, sealed, aad)
        except InvalidTag:
            return None

    return encrypt, encrypt_into, decrypt


def _choose() -> tuple[str, tuple[Encrypt, EncryptInto, Decrypt]]:
    if os.environ.get("STRONGROOM_AEAD") != "cryptography":
        try:
            return "libcrypto", libcrypto()
        except ImportError:  # not built here, or no libcrypto: the package does the same
            pass
    return "cryptography", cryptography()


_NAME, (_encrypt, _encrypt_into, _decrypt) = _choose()


def implementation() -> str:
    """Which implementation this process uses: ``libcrypto`` or ``cryptography``."""
    return _NAME


class AesGcm:
    """One AES-256-GCM key.  Safe to share between threads; the GIL is released while
    OpenSSL works."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError("an AES-256-GCM key is 32 bytes")
        self._key = bytes(key)

    def encrypt(self, nonce: Buffer, data: Buffer, aad: Buffer) -> bytes:
        """Ciphertext || 16-byte tag."""
        return _encrypt(self._key, nonce, data, aad)

    def encrypt_into(self, nonce: Buffer, data: Buffer, aad: Buffer, out: memoryview) -> None:
        """Ciphertext || tag into ``out``, exactly ``len(data) + 16`` bytes."""
        _encrypt_into(self._key, nonce, data, aad, out)

    def decrypt(self, nonce: Buffer, sealed: Buffer, aad: Buffer) -> bytes:
        """The plaintext of ciphertext || tag; :class:`AuthenticationFailed` if not authentic."""
        plain = _decrypt(self._key, nonce, sealed, aad)
        if plain is None:
            raise AuthenticationFailed
        return plain
