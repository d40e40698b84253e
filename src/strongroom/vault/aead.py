"""AES-256-GCM, the vault's one cipher, behind one small surface.

Implementations that give the same bytes (tests/vault/test_aead.py):

- ``strongroom.vault._gcm`` (``_gcm.c``): with the CPU's AES-NI and PCLMULQDQ
  (``_gcm_ni.c``: no library, 4.0 GB/s against Debian 12's OpenSSL 3.0 at 4.6 for 1 MiB,
  faster below 16 KiB), else the system's libcrypto (``STRONGROOM_GCM=libcrypto`` picks it
  anyway).  libcrypto cost each process 5.5 MiB of memory, and ``hashlib`` (which ``hmac``
  imports) loads it too, so the backup's and restore's modules use neither (session 25).
  Used where it was built.
- the ``cryptography`` package otherwise.  Importing it costs a process 8.5 MiB of memory
  and 15 ms of CPU, which is why it is not the first choice: a tree's backup or restore is
  two processes, and small trees' backups are mostly fixed cost.  Its wheel's OpenSSL 3.5
  encrypts at 9-17 GB/s (VAES): about 0.15 CPU seconds less per GiB stored, a few per cent
  of what a GiB's backup costs.  ``STRONGROOM_AEAD=cryptography`` picks the package
  regardless (measurements, tests).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from mmap import mmap
from typing import TypeAlias

Buffer: TypeAlias = bytes | bytearray | memoryview
Writable: TypeAlias = bytearray | memoryview | mmap

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16

# (key, nonce, data, aad) -> ciphertext || tag; the same into a buffer; (key, nonce,
# sealed, aad) -> plaintext, or None when it is not authentic
Encrypt: TypeAlias = Callable[[bytes, Buffer, Buffer, Buffer], bytes]
# (key, nonce, data, aad, buffer, offset): ciphertext || tag into buffer[offset:]
EncryptAt: TypeAlias = Callable[[bytes, Buffer, Buffer, Buffer, "Writable", int], None]
Decrypt: TypeAlias = Callable[[bytes, Buffer, Buffer, Buffer], "bytes | None"]


class AuthenticationFailed(Exception):
    """The ciphertext, its additional data, nonce or key do not match: corrupted or forged."""


def compiled() -> tuple[Encrypt, EncryptAt, Decrypt]:
    """The compiled implementation; ImportError where it was not built, or the CPU has no
    AES-NI and no libcrypto was found."""
    from strongroom.vault import _gcm

    return _gcm.encrypt, _gcm.encrypt_into, _gcm.decrypt


def cryptography() -> tuple[Encrypt, EncryptAt, Decrypt]:
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

    def encrypt_into(
        key: bytes, nonce: Buffer, data: Buffer, aad: Buffer, out: Writable, offset: int
    ) -> None:
        check(nonce)
        end = offset + len(data) + TAG_SIZE
        if offset < 0 or end > len(out):
            raise ValueError("the output buffer has no room at that offset")
        with memoryview(out) as view:
            AESGCM(key).encrypt_into(nonce, data, aad, view[offset:end])

    def decrypt(key: bytes, nonce: Buffer, sealed: Buffer, aad: Buffer) -> bytes | None:
        check(nonce)
        try:
            return AESGCM(key).decrypt(nonce, sealed, aad)
        except InvalidTag:
            return None

    return encrypt, encrypt_into, decrypt


# (key, number, chunk_id, ctype, flags, raw, payload, out, offset, entries, base) -> end:
# a pack blob and its entry in one call (``_gcm.seal_blob``; pack.py's layout)
SealBlob: TypeAlias = Callable[
    [bytes, int, bytes, int, int, int, Buffer, "Writable", int, bytearray, int], int
]


def _choose() -> tuple[str, tuple[Encrypt, EncryptAt, Decrypt]]:
    if os.environ.get("STRONGROOM_AEAD") != "cryptography":
        try:
            found = compiled()
            from strongroom.vault import _gcm

            return _gcm.ENGINE, found
        except ImportError:  # not built here, or no libcrypto: the package does the same
            pass
    return "cryptography", cryptography()


_NAME, (_encrypt, _encrypt_into, _decrypt) = _choose()


def _blob_sealer() -> SealBlob | None:
    if _NAME == "cryptography":
        return None
    from strongroom.vault import _gcm

    return _gcm.seal_blob


_seal_blob = _blob_sealer()


def implementation() -> str:
    """Which implementation this process uses: ``aes-ni`` or ``libcrypto`` (``_gcm``), or
    ``cryptography``."""
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

    def encrypt_into(
        self, nonce: Buffer, data: Buffer, aad: Buffer, out: Writable, offset: int = 0
    ) -> None:
        """Ciphertext || tag into ``out[offset:offset + len(data) + 16]``."""
        _encrypt_into(self._key, nonce, data, aad, out, offset)

    @property
    def blob_sealer(self) -> Callable[..., int] | None:
        """``seal_blob`` with this key bound (pack.py's ``PackBuilder.add``); None where
        the compiled implementation is not in use."""
        if _seal_blob is None:
            return None
        return functools.partial(_seal_blob, self._key)

    def decrypt(self, nonce: Buffer, sealed: Buffer, aad: Buffer) -> bytes:
        """The plaintext of ciphertext || tag; :class:`AuthenticationFailed` if not authentic."""
        plain = _decrypt(self._key, nonce, sealed, aad)
        if plain is None:
            raise AuthenticationFailed
        return plain
