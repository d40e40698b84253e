"""What reading a chunk holds at once: a chunk read alone (a restore's big chunks, one to a
ranged read) lets its stored bytes go before it is decompressed, so a 4 MiB chunk is held
twice at most (its payload and its plaintext), not three times."""

from __future__ import annotations

import random
import weakref
from pathlib import Path

import pytest

from strongroom.storage.local import LocalBackend
from strongroom.vault.pack import BlobDecoder
from strongroom.vault.vault import Vault
from tests.constants import FAST_KDF


class _Stored(bytearray):
    """The stored bytes as a backend returns them, but weakly referenceable."""


def test_a_chunk_read_alone_lets_its_stored_bytes_go_before_it_decompresses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LocalBackend(tmp_path / "v")
    vault = Vault.init(backend, "pw", kdf=FAST_KDF)
    rng = random.Random(4)
    data = b" ".join(rng.choice([b"alpha", b"beta", b"gamma"]) for _ in range(300_000))
    writer = vault.writer()
    cid = writer.put(data).chunk_id
    writer.flush()
    writer.close()

    read_range = backend.get_range
    fetched: list[weakref.ref[_Stored]] = []

    def get_range(name: str, offset: int, length: int) -> bytes:
        stored = _Stored(read_range(name, offset, length))
        fetched.append(weakref.ref(stored))
        return stored  # type: ignore[return-value]  # a bytearray does what bytes would here

    finish = BlobDecoder.finish
    alive_at_finish: list[bool] = []

    def watched_finish(
        self: BlobDecoder, payload: bytes, chunk_id: bytes, flags: int, raw: int, where: str
    ) -> bytes:
        alive_at_finish.append(fetched[-1]() is not None)
        return finish(self, payload, chunk_id, flags, raw, where)

    monkeypatch.setattr(backend, "get_range", get_range)
    monkeypatch.setattr(BlobDecoder, "finish", watched_finish)

    assert vault.reader.read(cid) == data
    assert alive_at_finish == [False]
    # a planned read of a lone chunk reads it alone too
    assert list(vault.read_planned(vault.locate([cid]))) == [data]
