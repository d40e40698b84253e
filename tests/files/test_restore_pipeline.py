"""The restore's content pipeline: jobs on a pool, coalesced pack reads, slices of big files,
one damaged chunk failing one file, running out of space mid-way."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
from pathlib import Path

import pytest

from strongroom.errors import FilesError
from strongroom.files import BackupOptions, RestoreOptions, backup_files, restore_files
from strongroom.files.fetch import ContentWriter, write_at
from strongroom.files.nodes import FILE, TEMP_PREFIX, Node
from strongroom.files.plan import CREATE, Entry
from strongroom.files.restorejobs import NO_CHUNKS, JobLimits, Slice, plan_jobs
from strongroom.files.tree import TreeReader, root_node
from strongroom.storage import LocalBackend, MemoryBackend
from strongroom.vault import NOT_INDEXED, Vault
from strongroom.vault.crypto import NONCE_SIZE
from strongroom.vault.pack import pack_name
from strongroom.vault.reader import Located
from tests.conftest import FAST_KDF, PASSPHRASE
from tests.faults import FaultKind, FaultRule, FaultyBackend
from tests.files._support import assert_same, set_times, snapshot

WORDS = [b"alpha", b"beta", b"gamma", b"delta", b"epsilon", b"zeta", b"eta", b"theta"]


def _text(rng: random.Random, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        out += rng.choice(WORDS) + (b"\n" if rng.random() < 0.1 else b" ")
    return bytes(out[:size])


def _small_tree(root: Path, count: int, seed: int = 7) -> dict[str, bytes]:
    """``count`` files of 1-40 KiB, half text, half random, over a few folders."""
    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    for i in range(count):
        folder = root / f"d{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(1, 40 << 10)
        data = _text(rng, size) if i % 2 else rng.randbytes(size)
        (folder / f"f{i:04}").write_bytes(data)
        files[f"d{i % 4}/f{i:04}"] = data
    return files


def _out(target: Path, src: Path) -> Path:
    return target / os.path.relpath(src.resolve(), "/")


def _temps(root: Path) -> list[str]:
    prefix = os.fsdecode(TEMP_PREFIX)
    return [n for _, d, f in os.walk(root) for n in d + f if n.startswith(prefix)]


def _flip_blob_byte(vault: Vault, vault_dir: Path, data: bytes) -> None:
    """Damage, on disk, the stored blob of a one-chunk content."""
    entry = vault.index.lookup(vault.keys.chunk_id(data))
    assert entry is not None
    path = vault_dir / pack_name(entry.pack)
    with open(path, "r+b") as f:
        f.seek(entry.offset + NONCE_SIZE + 1)
        byte = f.read(1)
        f.seek(entry.offset + NONCE_SIZE + 1)
        f.write(bytes([byte[0] ^ 0x40]))


def test_small_files_come_in_shared_reads_and_round_trip(
    tmp_path: Path, vault: Vault, vault_dir: Path
) -> None:
    src = tmp_path / "src"
    files = _small_tree(src, 300)
    set_times(src)
    before = snapshot(src)  # before the backup: listing a folder moves its atime
    backup_files(vault, BackupOptions([str(src)], source="t"))

    counting = FaultyBackend(LocalBackend(vault_dir))
    other = Vault.open(counting, PASSPHRASE)
    point = other.resolve_point("latest", source="t")
    counting.reset_counters()
    target = tmp_path / "out"
    summary = restore_files(other, point, RestoreOptions(target, verify=True))

    assert summary.errors == []
    assert summary.files == len(files) and summary.verified == len(files)
    assert summary.bytes_written == sum(len(d) for d in files.values())
    assert_same(before, snapshot(_out(target, src)))
    assert _temps(target) == []
    # 300 one-chunk files, adjacent in their packs: far fewer reads than chunks (the tree
    # chunks are read one by one by the planner).
    assert counting.calls["get_range"] < len(files) // 4


def test_restore_from_object_storage_with_more_workers(tmp_path: Path) -> None:
    """A vault that is not a local folder (here in memory, as object storage would be)."""
    src = tmp_path / "src"
    files = _small_tree(src, 120)
    (src / "big.bin").write_bytes(random.Random(9).randbytes(6 << 20))
    store = FaultyBackend(MemoryBackend())
    vault = Vault.init(store, PASSPHRASE, kdf=FAST_KDF)
    backup_files(vault, BackupOptions([str(src)], source="t"))
    store.reset_counters()

    target = tmp_path / "out"
    summary = restore_files(vault, vault.resolve_point("latest"), RestoreOptions(target))

    assert summary.errors == [] and summary.files == len(files) + 1
    out = _out(target, src)
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data
    assert (out / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    assert store.calls["get_range"] < len(files) // 4
    assert _temps(target) == []


def test_big_and_sparse_files_are_written_in_slices(tmp_path: Path, vault: Vault) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(3)
    (src / "big.bin").write_bytes(rng.randbytes(9 << 20) + _text(rng, 5 << 20))
    with open(src / "sparse", "wb") as f:  # data extents around slice boundaries, holes between
        for at, size in ((0, 3 << 20), (7 << 20, 5 << 20), (20 << 20, 1 << 20)):
            f.seek(at)
            f.write(rng.randbytes(size))
        f.truncate(30 << 20)
    (src / "small").write_bytes(b"between the big ones")
    set_times(src)
    before = snapshot(src)  # before the backup: listing a folder moves its atime
    backup_files(vault, BackupOptions([str(src)], source="t"))

    target = tmp_path / "out"
    summary = restore_files(
        vault, vault.resolve_point("latest"), RestoreOptions(target, verify=True)
    )

    assert summary.errors == []
    assert summary.verified == 3
    out = _out(target, src)
    assert_same(before, snapshot(out))
    assert os.stat(out / "sparse").st_blocks * 512 < 12 << 20
    assert _temps(target) == []


def test_a_damaged_chunk_fails_only_its_file(tmp_path: Path, vault: Vault, vault_dir: Path) -> None:
    src = tmp_path / "src"
    files = _small_tree(src, 40)
    rng = random.Random(5)
    big = rng.randbytes(9 << 20)
    (src / "big.bin").write_bytes(big)
    summary = backup_files(vault, BackupOptions([str(src)], source="t"))
    assert summary.errors == []
    damaged = "d1/f0021"
    _flip_blob_byte(vault, vault_dir, files[damaged])
    # One chunk in the middle of the big file (its chunks are at most 4 MiB, so the one that
    # holds byte 5 MiB is neither the first nor the last).
    middle = _chunk_holding(vault, _chunks_of(vault, src / "big.bin"), 5 << 20)
    entry = vault.index.lookup(middle)
    assert entry is not None
    with open(vault_dir / pack_name(entry.pack), "r+b") as f:
        f.seek(entry.offset + NONCE_SIZE + 7)
        f.write(b"\xff\x00\xff")

    target = tmp_path / "out"
    result = restore_files(vault, vault.resolve_point("latest"), RestoreOptions(target))

    out = _out(target, src)
    failed = {os.path.relpath(p, out): reason for p, reason in result.errors}
    assert sorted(failed) == ["big.bin", damaged]
    assert all(r.startswith("cannot read its data: ") for r in failed.values())
    assert "fails authentication" in failed[damaged]
    assert not (out / damaged).exists() and not (out / "big.bin").exists()
    for rel, data in files.items():
        if rel != damaged:
            assert (out / rel).read_bytes() == data, rel
    assert result.files == len(files) - 1
    assert _temps(target) == []


def _chunks_of(vault: Vault, path: Path) -> list[bytes]:
    trees = TreeReader(vault)
    node = trees.lookup(root_node(vault.resolve_point("latest")), os.fsencode(path))
    assert node is not None
    return list(node.chunks)


def _chunk_holding(vault: Vault, chunks: list[bytes], offset: int) -> bytes:
    pos = 0
    for i, cid in enumerate(chunks):
        entry = vault.index.lookup(cid)
        assert entry is not None
        if pos <= offset < pos + entry.raw:
            assert 0 < i < len(chunks) - 1
            return cid
        pos += entry.raw
    raise AssertionError("offset past the content")


def _place(chunk: Located) -> tuple[bytes, int]:
    entry = chunk[1]
    assert entry is not None
    return entry.pack, entry.offset


@pytest.mark.parametrize("fault", ["transient", "bitflip", "short_read", None])
def test_chunks_of_a_span_that_fails_are_read_again_alone(
    tmp_path: Path, vault: Vault, vault_dir: Path, fault: FaultKind | None
) -> None:
    files = _small_tree(tmp_path / "src", 60)
    backup_files(vault, BackupOptions([str(tmp_path / "src")], source="t"))
    faulty = FaultyBackend(LocalBackend(vault_dir), seed=2)
    other = Vault.open(faulty, PASSPHRASE)
    by_id = {other.keys.chunk_id(data): data for data in files.values()}
    located = sorted(other.reader.locate(by_id), key=_place)
    if fault is not None:  # the first read, a span of many chunks
        faulty.add_rule(FaultRule(op="get_range", kind=fault, prefix="data/", times=1))
    faulty.reset_counters()

    got = list(other.reader.read_run(located))

    assert got == [by_id[cid] for cid, _ in located]
    assert faulty.injected.total() == (fault is not None)
    if fault is None:
        assert faulty.calls["get_range"] <= 4  # 60 chunks of up to 40 KiB, adjacent


def test_running_out_of_inodes_mid_restore_leaves_no_temporary_file(
    tmp_path: Path, vault: Vault
) -> None:
    src = tmp_path / "src"
    _small_tree(src, 200)
    backup_files(vault, BackupOptions([str(src)], source="t"))
    with _TmpfsMount(tmp_path / "mnt", "size=64m,nr_inodes=120") as mnt:
        with pytest.raises(FilesError, match="no space left on device while restoring"):
            restore_files(vault, vault.resolve_point("latest"), RestoreOptions(mnt))
        assert _temps(mnt) == []
        out = _out(mnt, src)
        for path in out.rglob("f*"):  # whatever was committed is whole
            assert path.read_bytes() == (src / path.relative_to(out)).read_bytes()


class _TmpfsMount:
    def __init__(self, mnt: Path, options: str) -> None:
        self.mnt, self.options = mnt, options

    def __enter__(self) -> Path:
        self.mnt.mkdir()
        mount = ["mount", "-t", "tmpfs", "-o", self.options, "tmpfs", str(self.mnt)]
        if subprocess.run(mount, check=False, capture_output=True).returncode:
            pytest.skip("cannot mount a tmpfs here")
        return self.mnt

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", str(self.mnt)], check=True)


# --- units -------------------------------------------------------------------------------------


def test_write_at_maps_content_onto_extents(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        extents = [(0, 4), (10, 3), (20, 5)]
        assert write_at(fd, extents, 2, b"abcde") == 13  # 'ab' at 2, 'cde' at 10
        assert write_at(fd, extents, 7, b"fghijk") == 25  # 'fghij' at 20, 'k' dropped
        assert write_at(fd, extents, 12, b"zz") == 0  # past the last extent: nothing
        os.ftruncate(fd, 26)
    finally:
        os.close(fd)
    data = path.read_bytes()
    assert data[2:4] == b"ab" and data[10:13] == b"cde" and data[20:25] == b"fghij"
    assert data[25:] == b"\0"


class _CountedNames:
    """Temporary names by a counter; no file starts with its final metadata."""

    def __init__(self) -> None:
        self.counter = itertools.count()

    def __call__(self, folder: bytes) -> bytes:
        return folder + str(next(self.counter)).encode()

    def fresh(self, tmp: bytes) -> None:
        return None

    def in_tree(self, folder: bytes) -> bool:
        return False


def test_jobs_keep_small_files_whole_and_slice_big_ones(vault: Vault) -> None:
    def entry(name: str, chunks: int, size: int) -> Entry:
        node = Node(name=name.encode(), kind=FILE, size=size)
        node.chunks = [os.urandom(32) for _ in range(chunks)]
        return Entry(b"/t", name.encode(), node, CREATE, place=NOT_INDEXED if chunks else NO_CHUNKS)

    writer = ContentWriter(vault, _CountedNames(), verify=False, as_root=False)
    files = [entry(f"s{i}", 1, 100) for i in range(5)] + [entry("big", 9, 9 << 20)]
    files += [entry(f"t{i}", 1, 100) for i in range(3)] + [entry("empty", 0, 0)]
    jobs = list(plan_jobs(files, writer.task, JobLimits(files=4, chunks=4)))
    shapes = [
        [e.node.name for e in job] if isinstance(job, list) else (job.lo, job.hi) for job in jobs
    ]
    # the index knows none of these chunks (size 0 each): the big file is cut by chunk count
    assert shapes == [
        [b"s0", b"s1", b"s2", b"s3"],
        [b"s4"],
        (0, 4),
        (4, 8),
        (8, 9),
        [b"t0", b"t1", b"t2", b"empty"],
    ]
    slices = [job for job in jobs if isinstance(job, Slice)]
    assert all(s.task is slices[0].task for s in slices)
    assert slices[0].task.pieces == slices[0].task.left == 3


def test_a_restore_of_small_files_runs_one_job_thread_on_local_storage() -> None:
    """Small files hold the interpreter lock for most of their work: one job thread; big
    files decompress and decrypt in parallel while one waits for a write: three, or two in
    each process of a restore by several; object storage waits on the network: its own
    count."""
    from strongroom.files.contents import job_workers
    from strongroom.files.nodes import FILE, Node
    from strongroom.files.plan import Entry

    def files(size: int, n: int) -> list[Entry]:
        return [
            Entry(b"/t", b"f%d" % i, Node(b"f%d" % i, FILE, size=size), "create") for i in range(n)
        ]

    assert job_workers(files(4096, 1000), 2) == 1
    assert job_workers(files(8 << 20, 10), 2) == 3  # one more while a write waits
    assert job_workers(files(8 << 20, 10), 1) == 1
    assert job_workers(files(4096, 1000) + files(1 << 30, 2), 2) == 3  # the average decides
    assert job_workers(files(4096, 1000), 4) == 4
    assert job_workers([], 2) == 2
    assert job_workers(files(8 << 20, 10), 2, processes=True) == 2
    assert job_workers(files(4096, 1000), 2, processes=True) == 1
    assert job_workers(files(8 << 20, 10), 4, processes=True) == 4
