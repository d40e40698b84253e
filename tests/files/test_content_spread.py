"""A big file's chunks put by helper threads (files/content.py, ``ContentReader._read_spread``):
the same chunk ids in the same order as one thread reading alone, for plain and sparse files;
one big file at a time spread (another read at once is put by its own thread); helpers turned
off mid-file (worker processes took over) and a put that fails leave nothing running and every
slot free; the reading thread ticks after each chunk."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strongroom.chunking import BytesLike, CDCParams, ContentChunker
from strongroom.files import content as content_mod
from strongroom.files.content import Content, ContentReader
from strongroom.vault.crypto import VaultKeys

_PARAMS = CDCParams(min_size=1024, avg_size=4096, max_size=16384)
_KEYS = VaultKeys.from_master(bytes(range(32)))


@pytest.fixture(autouse=True)
def small_big_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files of 32 KiB and more count as big here (8 MiB in a backup)."""
    monkeypatch.setattr(content_mod, "_SPREAD_FROM", 32 << 10)


class Puts:
    """A put (the keyed hash, as ``diff --live`` uses) that records the threads it ran on;
    ``fail_at``: the put of that chunk raises; ``then`` runs after the put of chunk n."""

    def __init__(self, fail_at: int = -1) -> None:
        self.threads: set[int] = set()
        self.count = 0
        self.fail_at = fail_at
        self.running = 0
        self.lock = threading.Lock()
        self.then: dict[int, object] = {}

    def __call__(self, data: BytesLike) -> bytes:
        with self.lock:
            n = self.count
            self.count += 1
            self.running += 1
        try:
            self.threads.add(threading.get_ident())
            if n == self.fail_at:
                raise OSError(5, "Input/output error")
            action = self.then.get(n)
            if callable(action):
                action()
            return _KEYS.chunk_id(bytes(data))
        finally:
            with self.lock:
                self.running -= 1


def _read_with(reader: ContentReader, path: Path) -> Content:
    fd = os.open(path, os.O_RDONLY)
    try:
        return reader.read(fd, os.fstat(fd))
    finally:
        os.close(fd)


def _read(path: Path, helpers: int, put: Puts | None = None) -> tuple[Content, ContentReader]:
    reader = ContentReader(ContentChunker(_PARAMS), put or Puts(), helpers)
    try:
        return _read_with(reader, path), reader
    finally:
        reader.close()


def _free_slots(reader: ContentReader) -> int:
    return reader._free.qsize()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.integers(min_value=32 << 10, max_value=400 << 10),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    hole=st.booleans(),
)
def test_spread_reads_give_the_ids_of_a_read_alone(
    tmp_path: Path, size: int, seed: int, hole: bool
) -> None:
    path = tmp_path / f"f{seed}-{size}-{hole}"
    data = bytes((seed * 7 + i * 13 + (i >> 9)) & 0xFF for i in range(size))
    with open(path, "wb") as f:
        f.write(data[: size // 2])
        if hole:  # a sparse file: read by extents
            f.seek(size // 2 + (1 << 20))
        f.write(data[size // 2 :])
    alone, _ = _read(path, 0)
    spread, reader = _read(path, 2)
    assert spread == alone
    assert len(alone.chunks) >= 2 and (alone.extents is not None) == hole
    assert _free_slots(reader) == 2


def test_the_helpers_put_the_chunks_and_the_reader_ticks(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(os.urandom(256 << 10))
    puts = Puts()
    ticks: list[tuple[int, int]] = []
    reader = ContentReader(
        ContentChunker(_PARAMS), puts, 2, lambda n: ticks.append((n, threading.get_ident()))
    )
    try:
        got = _read_with(reader, path)
    finally:
        reader.close()
    assert threading.get_ident() not in puts.threads and puts.count == len(got.chunks)
    assert [t for _, t in ticks] == [threading.get_ident()] * len(got.chunks)
    assert sum(n for n, _ in ticks) == got.nread == 256 << 10


def test_a_second_big_file_at_once_is_put_by_its_own_thread(tmp_path: Path) -> None:
    """While one thread spreads a big file, another's big file is put where it is read; each
    gets its own ids, in order."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(os.urandom(512 << 10))
    second.write_bytes(os.urandom(512 << 10))
    alone_a, _ = _read(first, 0)
    alone_b, _ = _read(second, 0)
    started = threading.Event()
    release = threading.Event()
    puts = Puts()

    def hold() -> None:  # the first read stays in flight
        started.set()
        release.wait(30)

    puts.then[3] = hold
    reader = ContentReader(ContentChunker(_PARAMS), puts, 2)
    out: dict[str, Content] = {}

    def read(name: str, path: Path) -> None:
        out[name] = _read_with(reader, path)

    t = threading.Thread(target=read, args=("a", first))
    t.start()
    assert started.wait(30)
    read_threads_before = set(puts.threads)
    read("b", second)  # while "a" is being read: put here, on this thread
    assert threading.get_ident() in puts.threads - read_threads_before
    release.set()
    t.join(30)
    reader.close()
    assert out["a"] == alone_a and out["b"] == alone_b


def test_helpers_turned_off_mid_file_finish_it_on_the_reading_thread(tmp_path: Path) -> None:
    """Worker processes took over (``helpers = 0``) while a big file was spread: the rest of
    it is put on the reading thread, the ids the same (a pop from an empty queue once failed
    a backup of /usr here)."""
    path = tmp_path / "big"
    path.write_bytes(os.urandom(256 << 10))
    alone, _ = _read(path, 0)
    puts = Puts()
    reader = ContentReader(ContentChunker(_PARAMS), puts, 2)
    puts.then[2] = lambda: setattr(reader, "helpers", 0)
    try:
        got = _read_with(reader, path)
    finally:
        reader.close()
    assert got == alone and threading.get_ident() in puts.threads
    assert _free_slots(reader) == 2


def test_a_failed_put_leaves_nothing_running_and_every_slot_free(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(os.urandom(256 << 10))
    puts = Puts(fail_at=5)
    reader = ContentReader(ContentChunker(_PARAMS), puts, 2)
    try:
        with pytest.raises(OSError, match="Input/output error"):
            _read_with(reader, path)
        assert puts.running == 0 and _free_slots(reader) == 2
        got = _read_with(reader, path)  # the reader is still usable
    finally:
        reader.close()
    assert len(got.chunks) > 5


def test_small_files_and_no_helpers_never_start_threads(tmp_path: Path) -> None:
    path = tmp_path / "small"
    path.write_bytes(os.urandom(20 << 10))  # under the (test's) big size
    _, reader = _read(path, 2)
    assert reader._pool is None
    big = tmp_path / "big"
    big.write_bytes(os.urandom(64 << 10))
    _, reader = _read(big, 0)
    assert reader._pool is None
