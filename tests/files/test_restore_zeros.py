"""Zeros in a restore (files/zeros.py): a big file's chunks of zeros are allocated, not
written, and a chunk known to be zeros is not read from the vault again."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.errors import StrongroomError
from strongroom.files import BackupOptions, RestoreOptions, backup_files, restore_files
from strongroom.files.fetch import MADE, ContentWriter, content_end, write_at
from strongroom.files.plan import Entry
from strongroom.files.restorejobs import plan_jobs
from strongroom.files.tree import TreeReader, root_node
from strongroom.files.zeros import BLOCK, KnownZeros, data_runs, is_zeros, merged, zeros
from strongroom.storage.directio import reserve
from strongroom.vault import Located, Vault
from strongroom.vault.reader import ChunkReader
from tests.files._support import assert_same, set_times, snapshot
from tests.loopfs import mounted

ZERO_CHUNK = bytes(4 << 20)  # what a long run of zeros is cut into (the chunker's max_size)


def _written() -> int:
    """Bytes this process has handed to write calls so far (every thread, O_DIRECT too)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def _out(target: Path, src: Path) -> Path:
    return target / os.path.relpath(src.resolve(), "/")


def _requests(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Records the id of every chunk a restore asks the vault for (the reads stay real)."""
    asked: list[bytes] = []
    real = ChunkReader.read_run

    def read_run(
        self: ChunkReader, chunks: Sequence[Located], span: int = 1 << 20
    ) -> Iterator[bytes | StrongroomError]:
        asked.extend(cid for cid, _ in chunks)
        return real(self, chunks, span)

    monkeypatch.setattr(ChunkReader, "read_run", read_run)
    return asked


def test_zeros_of_a_big_file_are_allocated_not_written(
    tmp_path: Path, vault: Vault, ext4: object
) -> None:
    make = ext4
    assert callable(make)
    rng = random.Random(5)
    src = tmp_path / "src"
    src.mkdir()
    data = rng.randbytes(300_000) + bytes(9 << 20) + rng.randbytes(200_001)
    (src / "disk.img").write_bytes(data)
    set_times(src)
    before = snapshot(src)
    backup_files(vault, BackupOptions([str(src)], source="t"))

    target = make("out")
    written = _written()
    summary = restore_files(
        vault, vault.resolve_point("latest"), RestoreOptions(target, verify=True)
    )
    written = _written() - written

    assert summary.errors == [] and summary.verified == 1
    out = _out(target, src)
    after = snapshot(out)
    for rec in (*before.values(), *after.values()):
        rec.pop("blocks")  # the small ext4 has 1 KiB blocks: compared below
    assert_same(before, after)
    assert (out / "disk.img").read_bytes() == data
    # as dense as the original: every block allocated, none a hole
    assert os.stat(out / "disk.img").st_blocks * 512 >= len(data)
    # the 9 MiB of zeros were not written, not even those in the chunks of data around them
    # (cut at 4 MiB: 3.7 MiB of zeros after the first 0.3 MiB of data)
    assert written < 1 << 20


def test_a_chunk_known_to_be_zeros_is_not_read_again(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(6)
    src = tmp_path / "src"
    src.mkdir()
    data = rng.randbytes(100_000) + bytes(6 * len(ZERO_CHUNK)) + rng.randbytes(100_000)
    (src / "zeros.raw").write_bytes(data)
    (src / "more.raw").write_bytes(bytes(2 * len(ZERO_CHUNK)) + b"tail")
    backup_files(vault, BackupOptions([str(src)], source="t"))
    zero_id = vault.keys.chunk_id(ZERO_CHUNK)
    asked = _requests(monkeypatch)

    target = tmp_path / "out"
    options = RestoreOptions(target, verify=True, workers=1, processes=0)
    summary = restore_files(vault, vault.resolve_point("latest"), options)

    assert summary.errors == [] and summary.verified == 2
    out = _out(target, src)
    assert (out / "zeros.raw").read_bytes() == data
    assert (out / "more.raw").read_bytes() == bytes(2 * len(ZERO_CHUNK)) + b"tail"
    assert asked.count(zero_id) == 1  # eight references, one read
    assert len(asked) > 1


@pytest.fixture
def ext2(tmp_path: Path) -> Iterator[Path]:
    """An ext2 file system: direct I/O, but no extents, so no ``fallocate``."""
    with mounted(tmp_path, "ext2") as mount:
        yield mount


def test_zeros_are_written_where_extents_cannot_be_reserved(
    tmp_path: Path, vault: Vault, ext2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing reserved, the zeros are written (from memory once known: still one read of
    the chunk), and the file is as dense as the original."""
    fd = os.open(ext2 / "probe", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert reserve(fd, [(0, 1 << 20)]) is False
    finally:
        os.close(fd)
        os.unlink(ext2 / "probe")
    rng = random.Random(7)
    src = tmp_path / "src"
    src.mkdir()
    data = rng.randbytes(70_000) + bytes(3 * len(ZERO_CHUNK)) + rng.randbytes(70_000)
    (src / "z.raw").write_bytes(data)
    backup_files(vault, BackupOptions([str(src)], source="t"))
    asked = _requests(monkeypatch)

    written = _written()
    options = RestoreOptions(ext2, verify=True, workers=1, processes=0)
    summary = restore_files(vault, vault.resolve_point("latest"), options)
    written = _written() - written

    assert summary.errors == [] and summary.verified == 1
    out = _out(ext2, src) / "z.raw"
    assert out.read_bytes() == data
    assert os.stat(out).st_blocks * 512 >= len(data)
    assert written >= len(data)
    assert asked.count(vault.keys.chunk_id(ZERO_CHUNK)) == 1


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=6),
    st.integers(min_value=0, max_value=120),
    st.integers(min_value=0, max_value=60),
)
def test_content_end_is_where_write_at_ends(
    tmp_path_factory: pytest.TempPathFactory, lengths: list[int], pos: int, size: int
) -> None:
    extents, at = [], 0
    for i, length in enumerate(lengths):
        at += i * 3  # holes between extents
        extents.append((at, length))
        at += length
    path = tmp_path_factory.mktemp("ends") / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert content_end(extents, pos, size) == write_at(fd, extents, pos, b"x" * size)
    finally:
        os.close(fd)


@settings(max_examples=300)
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=9000), st.binary(max_size=64))
def test_is_zeros_is_all_zero_bytes(head: bytes, run: int, tail: bytes) -> None:
    data = head + bytes(run) + tail
    assert is_zeros(data) == (len(data) > 0 and not any(data))
    assert is_zeros(memoryview(data)) == is_zeros(data)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(min_value=1, max_value=3 * BLOCK)),
        min_size=1,
        max_size=8,
    ),
    st.integers(min_value=0, max_value=4 * BLOCK),
)
def test_data_runs_leave_out_whole_aligned_blocks_of_zeros_only(
    parts: list[tuple[bool, int]], pos: int
) -> None:
    data = b"".join(bytes(n) if zero else b"\1" * n for zero, n in parts)
    runs = list(data_runs(data, pos))
    left_out, at = [], 0
    for lo, hi in runs:
        assert at <= lo < hi <= len(data)
        left_out.append((at, lo))
        at = hi
    left_out.append((at, len(data)))
    for lo, hi in left_out:  # only whole blocks of the content, and only zeros
        assert ((pos + lo) % BLOCK == 0 and (hi - lo) % BLOCK == 0) or lo == hi
        assert not any(data[lo:hi])
    # every aligned block of zeros is left out
    first = -pos % BLOCK
    for b in range(first, len(data) - BLOCK + 1, BLOCK):
        if not any(data[b : b + BLOCK]):
            assert any(lo <= b and b + BLOCK <= hi for lo, hi in left_out)


def test_zeros_from_memory_and_past_the_shared_buffer() -> None:
    assert is_zeros(zeros(10)) and len(zeros(10)) == 10
    big = zeros(len(ZERO_CHUNK) + 1)
    assert is_zeros(big) and len(big) == len(ZERO_CHUNK) + 1
    assert not is_zeros(ZERO_CHUNK + b"\1") and not is_zeros(b"")


def test_merged_puts_known_zeros_between_the_reads() -> None:
    known = KnownZeros()
    assert known.split([(b"a", None)]) is None  # nothing known yet
    assert not known.learn(b"d", b"\0\1\0")
    assert known.learn(b"z", bytes(5))

    class Entry:
        raw = 5

    chunks: list[Located] = [(b"d", Entry()), (b"z", Entry()), (b"z", None), (b"e", Entry())]  # type: ignore[list-item]
    flags = known.split(chunks)
    assert flags == [False, True, False, False]  # an unindexed id is read (and fails there)
    got = list(merged(chunks, flags, iter([b"one", b"two", b"three"])))
    assert [g if isinstance(g, StrongroomError) else bytes(g) for g in got] == [
        b"one",
        bytes(5),
        b"two",
        b"three",
    ]


class _InTree:
    """Temporary names for a staged tree: every file is made at its destination."""

    def __call__(self, folder: bytes) -> bytes:
        raise AssertionError("a file in the tree has no temporary name")

    def fresh(self, tmp: bytes) -> None:
        return None

    def in_tree(self, folder: bytes) -> bool:
        return True


def test_zeros_show_nothing_a_made_file_held(tmp_path: Path, vault: Vault) -> None:
    """A file made at its destination by another writer (MADE) is empty; were it not, what it
    held must not show through zeros left unwritten."""
    src = tmp_path / "src"
    src.mkdir()
    data = b"head" + bytes(2 * len(ZERO_CHUNK)) + b"tail"
    (src / "f").write_bytes(data)
    backup_files(vault, BackupOptions([str(src)], source="t"))
    node = TreeReader(vault).lookup(
        root_node(vault.resolve_point("latest")), os.fsencode(src / "f")
    )
    assert node is not None
    out = tmp_path / "out"
    out.mkdir()
    (out / "f").write_bytes(b"\xff" * len(data))  # what a leftover would hold
    writer = ContentWriter(vault, _InTree(), verify=True, as_root=False)
    entry = Entry(os.fsencode(out), b"f", node, MADE)
    done = [task for job in plan_jobs([entry], writer.task) for task in writer.run(job)]

    assert [(t.failure, t.verified) for t in done] == [(None, True)]
    assert (out / "f").read_bytes() == data
