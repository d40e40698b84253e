"""Reading chunks back: index lookup, ranged pack reads, decrypt, decompress, verify.

A read that fails verification is retried once (a flipped bit in transit or a short read
is not worth failing a restore over); a second failure is reported naming the pack.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.errors import IntegrityError, ObjectNotFound
from strongroom.storage.backend import Backend
from strongroom.vault.crypto import VaultKeys
from strongroom.vault.index import ChunkIndex, IndexEntry
from strongroom.vault.pack import BlobDecoder, pack_name


class ChunkReader:
    def __init__(self, backend: Backend, keys: VaultKeys, index: ChunkIndex) -> None:
        self._backend, self._keys, self._index = backend, keys, index
        self._local = threading.local()
        self._ciphers: dict[bytes, AESGCM] = {}
        self._cipher_lock = threading.Lock()

    def _decoder(self) -> BlobDecoder:
        dec = getattr(self._local, "decoder", None)
        if dec is None:
            dec = self._local.decoder = BlobDecoder(self._keys)
        return dec

    def _cipher(self, pack_id: bytes) -> AESGCM:
        with self._cipher_lock:
            cipher = self._ciphers.get(pack_id)
            if cipher is None:
                if len(self._ciphers) > 4096:
                    self._ciphers.clear()
                cipher = self._keys.pack_cipher(self._index.salt_of(pack_id))
                self._ciphers[pack_id] = cipher
            return cipher

    def entry(self, chunk_id: bytes) -> IndexEntry:
        entry = self._index.lookup(chunk_id)
        if entry is None:
            raise IntegrityError(f"chunk {chunk_id.hex()[:16]} is not in the vault's index")
        return entry

    def read(self, chunk_id: bytes) -> bytes:
        entry = self.entry(chunk_id)
        name = pack_name(entry.pack)
        for attempt in (1, 2):
            try:
                stored = self._backend.get_range(name, entry.offset, entry.length)
            except ObjectNotFound:
                raise IntegrityError(
                    f"{name}: pack missing (holds chunk {chunk_id.hex()[:16]})", name=name
                ) from None
            try:
                if len(stored) != entry.length:
                    raise IntegrityError(
                        f"{name}: short read of chunk {chunk_id.hex()[:16]}", name=name
                    )
                return self._decoder().decode(
                    self._cipher(entry.pack),
                    stored,
                    chunk_id,
                    entry.ctype,
                    entry.flags,
                    entry.raw,
                    name,
                )
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def read_many(
        self, ids: Iterable[bytes], workers: int = 4, window: int = 16
    ) -> Iterator[bytes]:
        """Chunks in the order given, fetched ``workers`` at a time, ``window`` ahead."""
        with ThreadPoolExecutor(workers, thread_name_prefix="chunk-read") as pool:
            ahead: deque[Future[bytes]] = deque()
            try:
                for cid in ids:
                    ahead.append(pool.submit(self.read, cid))
                    if len(ahead) >= window:
                        yield ahead.popleft().result()
                while ahead:
                    yield ahead.popleft().result()
            finally:
                for fut in ahead:
                    fut.cancel()
