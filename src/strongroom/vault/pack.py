"""Pack files: many encrypted blobs plus an encrypted header that lists them.

Layout (integers little-endian)::

    "SRPK" | version u8 (1) | 3 reserved bytes | salt (32)           40 bytes
    blob*   nonce (12) | AES-256-GCM(payload) | tag (16)
    header  nonce (12) | AES-256-GCM(entries) | tag (16)
    trailer header length u32 | "SRPE"                                8 bytes

The pack key is keyed-BLAKE3(pack subkey, salt).  A blob's associated data is
``"SRB1" | id | type | flags | raw length u32``, so a blob cannot be read under another id or
type.  Header entries are :mod:`entry records <strongroom.vault.entries>`, the same layout as
in index objects.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable

import zstandard

from strongroom.anonmem import anonymous_map
from strongroom.errors import IntegrityError, UnsupportedVersion
from strongroom.records import dataclass
from strongroom.storage.directio import ALIGN
from strongroom.vault.aead import AesGcm, AuthenticationFailed
from strongroom.vault.crypto import ID_SIZE, NONCE_SIZE, TAG_SIZE, VaultKeys
from strongroom.vault.entries import ENTRY, ENTRY_SIZE, Entries
from strongroom.vault.packstream import PackStream, SegmentBuffers

PACK_MAGIC = b"SRPK"
PACK_END = b"SRPE"
_PACK_HEAD = struct.Struct("<4sB3x32s")
_TRAILER = struct.Struct("<I4s")
_BLOB_AAD = struct.Struct("<4s32sBBI")
HEAD_SIZE = _PACK_HEAD.size
BLOB_OVERHEAD = NONCE_SIZE + TAG_SIZE
FLAG_ZSTD = 1


def pack_tail_size(entries: int) -> int:
    """Bytes after the last blob: the sealed header of ``entries`` entries and the trailer."""
    return BLOB_OVERHEAD + entries * ENTRY_SIZE + _TRAILER.size


def pack_name(pack_id: bytes) -> str:
    hexid = pack_id.hex()
    return f"data/{hexid[:2]}/{hexid}"


def blob_aad(chunk_id: bytes, ctype: int, flags: int, raw: int) -> bytes:
    return _BLOB_AAD.pack(b"SRB1", chunk_id, ctype, flags, raw)


def header_aad(salt: bytes) -> bytes:
    return b"SRPH" + salt


STREAM_WINDOW = 1 << 19
"""A streaming builder hands its bytes to the stream whenever it holds this much.  Each of a
writer's builders touches two buffers of about a window plus a blob (up to four while the disk
is behind: packstream.py): 512 KiB rather than 1 MiB took 3-5 MiB off a files backup's peak
memory (two processes, two builders each at work) for a few more write calls (a 16 MiB pack
in 32 of them)."""


class PackBuilder:
    """Assembles one pack at a time in a reusable buffer (no fresh large allocations).

    With a :class:`PackStream` the pack streams: once the buffer holds
    :data:`STREAM_WINDOW` bytes, their aligned prefix goes to the stream and blobs continue
    in a spare buffer, so memory stays a few windows whatever the pack size.  A pack that
    never fills a window is returned whole by :meth:`finish` and written with one ``put``.
    """

    def __init__(self, keys: VaultKeys, capacity: int, stream: PackStream | None = None) -> None:
        self._keys = keys
        self.stream = stream
        if stream is not None:
            capacity = 2 * STREAM_WINDOW
        # Anonymous mappings: page-aligned, so the local backend can write them with direct
        # I/O, and pages cost memory only once touched, so an idle builder costs none.
        self._buf = _anonymous_map(max(capacity, HEAD_SIZE))
        self._spares = SegmentBuffers(capacity, _anonymous_map) if stream is not None else None
        # the entries as their 48-byte records: a tuple of ints per blob cost 280 bytes, and
        # a pack of small files' chunks holds 10,000 of them (2.8 MiB a builder)
        self._entries = bytearray()
        self._pos = 0
        self._base = 0  # bytes already streamed out before the buffer's start
        self._nonces = 0
        self.salt = b""
        self._cipher: AesGcm | None = None
        self._seal: Callable[..., int] | None = None  # the cipher's compiled seal_blob

    def start(self) -> None:
        """Begin a new pack; any view returned by ``finish`` must be released by now."""
        self.salt = os.urandom(32)
        self._cipher = self._keys.pack_cipher(self.salt)
        self._seal = self._cipher.blob_sealer
        self._entries.clear()
        self._nonces = 0
        self._base = 0
        if self.stream is not None:
            self.stream.reset()
        if self._spares is not None:
            self._spares.settle()  # the last pack's segments are written (or it was dropped)
        _PACK_HEAD.pack_into(self._buf, 0, PACK_MAGIC, 1, self.salt)
        self._pos = HEAD_SIZE

    def abandon(self) -> list[bytes]:
        """Drop the pack being built (its streamed part too); returns the ids it held."""
        ids = Entries(bytes(self._entries)).ids()
        if self.stream is not None:
            self.stream.abort()
        self._entries.clear()
        self._cipher = self._seal = None
        self._pos = self._base = 0
        return ids

    @property
    def size(self) -> int:
        return self._base + self._pos

    @property
    def streamed(self) -> bool:
        """Whether part of the current pack went to the stream (``finish`` gives the tail)."""
        return self._base > 0

    @property
    def count(self) -> int:
        return len(self._entries) // ENTRY_SIZE

    def release_memory(self) -> None:
        """Give the buffers' pages back to the system while this builder waits for its next
        pack, which touches them again (they read as zeros then; every pack writes its own
        header).  A writer rotates two builders at least, one filling while the other's pack
        is written, and the idle one's pages used to stay: 1 MiB of a streamed builder of
        small blobs, 9 MiB of one grown for 4 MiB blobs, the whole pack's 20 MiB where
        packs do not stream.  Given back, a first backup of 30,000 small files peaked at 57
        instead of 59 MiB summed over its two processes, two 512 MiB files at 62 instead of
        72, for about 1 % more CPU time on the latter (page faults; docs/benchmarks.md,
        "Session 41")."""
        spares = self._spares.all() if self._spares is not None else []
        for buf in (self._buf, *spares):
            buf.madvise(mmap.MADV_DONTNEED)

    def _reserve(self, n: int) -> None:
        need = self._pos + n
        if need > len(self._buf):  # a blob larger than the buffer (pack or window): rarely
            bigger = _anonymous_map(max(need, 2 * len(self._buf)))
            bigger[: self._pos] = self._buf[: self._pos]
            # dropped, not closed: a view of the old buffer may outlive its pack (a failed
            # upload's traceback holds the slices it wrote), and closing a map with views
            # raises BufferError, which then hid the upload's own error ("no space left");
            # the map goes with its last view
            self._buf = bigger

    def add(
        self,
        chunk_id: bytes,
        ctype: int,
        payload: bytes | bytearray | memoryview,
        flags: int,
        raw: int,
    ) -> None:
        """Encrypt ``payload`` (already compressed when ``flags`` says so) into the pack."""
        cipher = self._cipher
        assert cipher is not None
        n = len(payload) + BLOB_OVERHEAD
        start = self._pos
        if start + n > len(self._buf):
            self._reserve(n)
        seal = self._seal
        if seal is not None:  # the same bytes in one compiled call (aead.py, _gcm.c)
            number = self._nonces
            self._nonces = number + 1
            self._pos = seal(
                number,
                chunk_id,
                ctype,
                flags,
                raw,
                payload,
                self._buf,
                start,
                self._entries,
                self._base,
            )
        else:
            # sealed at its offset in the buffer (no view to make per blob)
            nonce = self._next_nonce()
            buf = self._buf
            buf[start : start + NONCE_SIZE] = nonce
            aad = blob_aad(chunk_id, ctype, flags, raw)
            cipher.encrypt_into(nonce, payload, aad, buf, start + NONCE_SIZE)
            self._entries += ENTRY.pack(chunk_id, ctype, flags, 0, self._base + start, n, raw)
            self._pos = start + n
        if self.stream is not None and self._pos >= STREAM_WINDOW:
            self._stream_out(self.stream)

    def _stream_out(self, stream: PackStream) -> None:
        """Queue the buffer's aligned prefix and go on in a spare buffer with the rest."""
        assert self._spares is not None
        spare = self._spares.spare()
        n = self._pos // ALIGN * ALIGN
        rest = self._pos - n
        spare[:rest] = self._buf[n : self._pos]
        self._spares.queued(self._buf, stream.write_segment(memoryview(self._buf)[:n]))
        self._buf = spare
        self._base += n
        self._pos = rest

    def _next_nonce(self) -> bytes:
        # The key is this pack's alone (random salt), so numbering its blobs makes every
        # nonce unique without a getrandom call per blob.
        n = self._nonces
        self._nonces = n + 1
        return n.to_bytes(NONCE_SIZE, "little")

    def finish(self) -> tuple[memoryview, Entries]:
        """Seal the header; return (pack bytes, entries).

        The bytes are a view of this builder's buffer, valid until its next ``start``: the
        writer keeps a small pool of builders so a pack can upload while the next one fills.
        When the pack streamed (:attr:`streamed`) they are only its tail, for
        :meth:`PackStream.finish`.
        """
        assert self._cipher is not None
        entries = Entries(bytes(self._entries))
        nonce = self._next_nonce()
        # sealed in place, as blobs are: a pack of 10,000 small files has a 480 KB header,
        # and sealing it apart then joining it to its nonce had made two more copies of it
        sealed = NONCE_SIZE + len(entries.data) + TAG_SIZE
        self._reserve(sealed + _TRAILER.size)
        start, buf = self._pos, self._buf
        buf[start : start + NONCE_SIZE] = nonce
        aad = header_aad(self.salt)
        self._cipher.encrypt_into(nonce, entries.data, aad, buf, start + NONCE_SIZE)
        end = start + sealed
        _TRAILER.pack_into(buf, end, sealed, PACK_END)
        data = memoryview(buf)[: end + _TRAILER.size]
        self._pos = 0
        self._cipher = self._seal = None
        return data, entries


def _anonymous_map(size: int) -> mmap.mmap:
    return anonymous_map(-(-size // mmap.PAGESIZE) * mmap.PAGESIZE)


@dataclass(frozen=True)
class PackContents:
    salt: bytes
    entries: Entries


def read_pack_header(keys: VaultKeys, data: bytes, name: str) -> PackContents:
    """Parse and authenticate a whole pack's header (used by check and repair)."""
    if len(data) < HEAD_SIZE + _TRAILER.size:
        raise IntegrityError(f"{name}: truncated pack ({len(data)} bytes)", name=name)
    magic, version, salt = _PACK_HEAD.unpack_from(data)
    if magic != PACK_MAGIC:
        raise IntegrityError(f"{name}: not a pack (bad magic)", name=name)
    if version != 1:
        raise UnsupportedVersion(f"{name}: pack version {version} is not supported")
    hlen, end = _TRAILER.unpack_from(data, len(data) - _TRAILER.size)
    hstart = len(data) - _TRAILER.size - hlen
    if end != PACK_END or hstart < HEAD_SIZE or hlen < BLOB_OVERHEAD:
        raise IntegrityError(f"{name}: truncated or damaged pack trailer", name=name)
    sealed = memoryview(data)[hstart : hstart + hlen]
    try:
        plain = keys.pack_cipher(salt).decrypt(
            sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], header_aad(salt)
        )
    except AuthenticationFailed:
        raise IntegrityError(f"{name}: pack header fails authentication", name=name) from None
    if len(plain) % ENTRY_SIZE:
        raise IntegrityError(f"{name}: pack header has a partial entry", name=name)
    entries = Entries(plain)
    if max((off + length for _, _, _, _, off, length, _ in entries.rows()), default=0) > hstart:
        raise IntegrityError(f"{name}: pack header points past the blobs", name=name)
    return PackContents(salt, entries)


class BlobDecoder:
    """Decrypts, decompresses and verifies blobs; one per thread (reuses its decompressor).

    :meth:`decode` is :meth:`decrypt` then :meth:`finish`; a caller that holds the only
    reference to the stored bytes calls them apart and lets the stored bytes go in between,
    so a 4 MiB chunk is held twice at most while it decompresses, not three times."""

    def __init__(self, keys: VaultKeys) -> None:
        self._keys = keys
        self._dctx = zstandard.ZstdDecompressor()

    def decode(
        self,
        cipher: AesGcm,
        stored: bytes | bytearray | memoryview,
        chunk_id: bytes,
        ctype: int,
        flags: int,
        raw: int,
        where: str,
    ) -> bytes:
        payload = self.decrypt(cipher, stored, chunk_id, ctype, flags, raw, where)
        return self.finish(payload, chunk_id, flags, raw, where)

    @staticmethod
    def decrypt(
        cipher: AesGcm,
        stored: bytes | bytearray | memoryview,
        chunk_id: bytes,
        ctype: int,
        flags: int,
        raw: int,
        where: str,
    ) -> bytes:
        """The blob's payload (compressed where ``flags`` say so), authenticated."""
        view = memoryview(stored)
        if len(view) < BLOB_OVERHEAD:
            raise IntegrityError(f"{where}: chunk {chunk_id.hex()[:16]} truncated", name=where)
        try:
            return cipher.decrypt(
                view[:NONCE_SIZE], view[NONCE_SIZE:], blob_aad(chunk_id, ctype, flags, raw)
            )
        except AuthenticationFailed:
            raise IntegrityError(
                f"{where}: chunk {chunk_id.hex()[:16]} fails authentication (corrupted)", name=where
            ) from None

    def finish(self, payload: bytes, chunk_id: bytes, flags: int, raw: int, where: str) -> bytes:
        """The chunk from its decrypted payload, its size and id checked."""
        plain = payload
        if flags & FLAG_ZSTD:
            try:
                plain = self._dctx.decompress(payload, max_output_size=raw)
            except zstandard.ZstdError as exc:
                raise IntegrityError(
                    f"{where}: chunk {chunk_id.hex()[:16]}: {exc}", name=where
                ) from None
        if len(plain) != raw or self._keys.chunk_id(plain) != chunk_id:
            raise IntegrityError(
                f"{where}: chunk {chunk_id.hex()[:16]} has wrong content", name=where
            )
        return plain


def id_bytes(value: object) -> bytes:
    """A numpy V32 scalar or bytes as a plain 32-byte ``bytes``."""
    data: bytes = bytes(value)  # type: ignore[call-overload]
    if len(data) != ID_SIZE:
        raise ValueError("chunk id must be 32 bytes")
    return data
