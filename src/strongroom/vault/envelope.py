"""Sealed vault objects: index objects, recovery points and locks.

Layout (all integers little-endian)::

    magic      4 bytes   b"SRIX" index, b"SRPT" recovery point, b"SRLK" lock,
                         b"SRDL" soft-delete tombstone
    version    u8        1
    flags      u8        bit 0: payload is zstd-compressed
    reserved   u16       0
    nonce      12 bytes
    ciphertext n bytes   AES-256-GCM of the (compressed) payload
    tag        16 bytes

The associated data is the 8-byte prefix followed by the vault id, so an object cannot be moved
between object kinds or between vaults.  Index objects and recovery points are named by the
BLAKE3 of these stored bytes, so a renamed or replayed copy fails the name check.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import TypeVar

import zstandard

from strongroom.errors import IntegrityError, UnsupportedVersion
from strongroom.storage.backend import Backend
from strongroom.storage.names import content_digest
from strongroom.vault.aead import AesGcm
from strongroom.vault.crypto import NONCE_SIZE, TAG_SIZE, unseal

MAGIC_INDEX = b"SRIX"
MAGIC_POINT = b"SRPT"
MAGIC_LOCK = b"SRLK"
MAGIC_DELETED = b"SRDL"
_PREFIX = struct.Struct("<4sBBH")
_VERSION = 1
_FLAG_ZSTD = 1
_ZSTD_LEVEL = 3
# level 3 with a 128 KiB window and 16 Ki-entry tables (seal_object says why)
_SEAL_PARAMS = zstandard.ZstdCompressionParameters.from_level(
    _ZSTD_LEVEL, window_log=17, hash_log=14, chain_log=14
)
T = TypeVar("T")


def object_name_hash(stored: bytes | bytearray | memoryview) -> str:
    return content_digest(stored).hex()


def seal_object(magic: bytes, key: bytes, vault_id: bytes, payload: bytes) -> bytearray:
    """The stored bytes of an object (see the module's layout), sealed in one buffer.

    A files backup writes its index objects at its end, while its worker processes still
    run, so what sealing one holds at once is part of the backup's peak memory: the
    compressor's tables are kept small (an index object is mostly random chunk ids, which
    no match finder shortens) and the ciphertext goes straight into the output buffer."""
    packed = zstandard.ZstdCompressor(compression_params=_SEAL_PARAMS).compress(payload)
    flags = _FLAG_ZSTD if len(packed) < len(payload) else 0
    body = packed if flags else payload
    prefix = _PREFIX.pack(magic, _VERSION, flags, 0)
    nonce = os.urandom(NONCE_SIZE)
    head = len(prefix) + NONCE_SIZE
    out = bytearray(head + len(body) + TAG_SIZE)
    out[: len(prefix)] = prefix
    out[len(prefix) : head] = nonce
    AesGcm(key).encrypt_into(nonce, body, prefix + vault_id, out, head)
    return out


def open_object(
    magic: bytes, key: bytes, vault_id: bytes, stored: bytes | bytearray, *, name: str
) -> bytes:
    """Check and decrypt a sealed object; raise an error naming ``name`` on any problem."""
    if len(stored) < _PREFIX.size:
        raise IntegrityError(f"{name}: truncated ({len(stored)} bytes)", name=name)
    got_magic, version, flags, _ = _PREFIX.unpack_from(stored)
    if got_magic != magic:
        raise IntegrityError(f"{name}: not a {magic.decode()} object", name=name)
    if version != _VERSION:
        raise UnsupportedVersion(f"{name}: object version {version} is not supported")
    prefix = bytes(stored[: _PREFIX.size])
    body = unseal(key, memoryview(stored)[_PREFIX.size :], prefix + vault_id, name=name)
    if not flags & _FLAG_ZSTD:
        return body
    try:
        return zstandard.ZstdDecompressor().decompress(body)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"{name}: cannot decompress: {exc}", name=name) from None


def check_content_name(name: str, stored: bytes) -> None:
    """Content-addressed objects must hash to the last component of their name."""
    want = name.rsplit("/", 1)[-1]
    if object_name_hash(stored) != want:
        raise IntegrityError(f"{name}: content does not match its name (corrupted)", name=name)


def read_checked(backend: Backend, name: str, parse: Callable[[bytes], T]) -> T:
    """``parse(backend.get(name))``, fetched a second time if the first copy fails to verify.

    A flipped bit or a short read in transit is not worth failing over; a second failure is
    reported as it is (naming the object).
    """
    try:
        return parse(backend.get(name))
    except IntegrityError:
        return parse(backend.get(name))
