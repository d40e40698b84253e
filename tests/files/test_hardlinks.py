"""A file with several names is read once a backup (files/hardlinks.py): its other names get
that read's content while the inode is as it was read, and are read again once it changed."""

from __future__ import annotations

import os
import time
from pathlib import Path

from blake3 import blake3
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.chunking import BytesLike, ContentChunker
from strongroom.files import BackupOptions, RestoreOptions, backup_files, restore_files
from strongroom.files.content import Content, ContentReader
from strongroom.files.hardlinks import LinkedReads
from strongroom.files.metadata import Names, node_from_stat
from strongroom.files.reading import RACY_NS, FileItem, FileOutcome, FileReader
from strongroom.vault import Vault

BIG = 3 * ContentChunker().params.min_size  # read the general way (chunked)


def _put(data: BytesLike) -> bytes:
    return blake3(data).digest()


def _reader() -> FileReader:
    return FileReader(ContentReader(ContentChunker(), _put), Names())


def _read(reader: FileReader, path: Path) -> FileOutcome:
    st = os.lstat(path)
    node = node_from_stat(os.fsencode(path.name), st, Names())
    assert node is not None
    return reader.one(FileItem(object(), os.fsencode(path.parent), node, None, st))


def _linked_tree(root: Path) -> dict[str, bytes]:
    """A big and a small file with three names each, in three folders; an old mtime."""
    data = {"big": os.urandom(BIG), "small": b"small and linked\n" * 10}
    for folder in ("a", "b", "c"):
        (root / folder).mkdir(parents=True)
    for name, content in data.items():
        first = root / "a" / name
        first.write_bytes(content)
        os.utime(first, ns=(1_600_000_000_000_000_000,) * 2)
        os.link(first, root / "b" / name)
        os.link(first, root / "c" / f"{name}-again")
    return data


def test_other_names_are_not_read_again(tmp_path: Path) -> None:
    _linked_tree(tmp_path / "t")
    time.sleep(RACY_NS / 1e9)  # the ctime the links moved is old enough for cache rows
    reader = _reader()
    outs = [_read(reader, tmp_path / "t" / f) for f in ("a/big", "b/big", "c/big-again")]
    assert [o.nread for o in outs] == [BIG, 0, 0]
    nodes = [o.item.node for o in outs]
    assert nodes[0].chunks and all(n.chunks == nodes[0].chunks for n in nodes)
    assert all(n.size == BIG and n.link == nodes[0].link for n in nodes)
    # each name gets its own files-cache row, as if read
    rows = [o.cache_row for o in outs]
    assert all(r is not None for r in rows)
    assert [r[1] for r in rows if r is not None] == [b"big", b"big", b"big-again"]
    assert len(reader.links) == 0  # every name met: the inode left the table


def test_a_changed_inode_is_read_again(tmp_path: Path) -> None:
    _linked_tree(tmp_path / "t")
    reader = _reader()
    first = _read(reader, tmp_path / "t" / "a" / "small")
    with open(tmp_path / "t" / "a" / "small", "ab") as f:
        f.write(b"written between two names\n")
    second = _read(reader, tmp_path / "t" / "b" / "small")
    assert second.nread == first.nread + len(b"written between two names\n")
    assert second.item.node.chunks != first.item.node.chunks
    os.chmod(tmp_path / "t" / "a" / "small", 0o600)  # ctime moves, the bytes do not
    third = _read(reader, tmp_path / "t" / "c" / "small-again")
    assert third.nread == second.nread and third.item.node.mode == 0o600


def test_a_backup_reads_each_inode_once_and_restores_the_links(
    tmp_path: Path, vault: Vault
) -> None:
    data = _linked_tree(tmp_path / "src")
    time.sleep(RACY_NS / 1e9)
    opts = BackupOptions([str(tmp_path / "src")], source="s", processes=0, workers=0)
    summary = backup_files(vault, opts)
    assert summary.files == 6
    assert summary.bytes_read == sum(len(d) for d in data.values())
    assert summary.logical_bytes == 3 * summary.bytes_read
    out = tmp_path / "out"
    restore_files(vault, vault.resolve_point(summary.point_id), RestoreOptions(str(out)))
    got = out / str(tmp_path / "src").lstrip("/")
    for name, content in data.items():
        names = [got / "a" / name, got / "b" / name, got / "c" / f"{name}-again"]
        assert all(p.read_bytes() == content for p in names)
        assert {os.lstat(p).st_ino for p in names} == {os.lstat(names[0]).st_ino}
        assert os.lstat(names[0]).st_nlink == 3
    again = backup_files(vault, opts)  # every name found in the files cache
    assert again.files_unchanged == 6 and again.bytes_read == 0


def _stat(ino: int, size: int, mtime: int, ctime: int, nlink: int) -> os.stat_result:
    return os.stat_result((0o100644, ino, 1, nlink, 0, 0, size, 0, 0, 0) + (0.0,) * 3
                          + (0, mtime, ctime, 4096, 8, 0))  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    nlink=st.integers(2, 6),
    moved=st.sampled_from(["none", "size", "mtime", "ctime", "inode"]),
)
def test_the_table_gives_a_read_only_for_the_same_inode(nlink: int, moved: str) -> None:
    links = LinkedReads()
    seen = _stat(7, 100, 5, 6, nlink)
    content = Content([b"c" * 32], None, 100)
    links.keep(seen, content, 0, (), 1)
    ino, size, mtime, ctime = 7, 100, 5, 6
    if moved == "size":
        size += 1
    elif moved == "mtime":
        mtime += 1
    elif moved == "ctime":
        ctime += 1
    elif moved == "inode":
        ino += 1
    got = links.take(_stat(ino, size, mtime, ctime, nlink))
    if moved != "none":
        assert got is None
        return
    assert got is not None and got.content == content
    for _ in range(nlink - 2):  # the other names
        assert links.take(seen) is not None
    assert links.take(seen) is None and len(links) == 0


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(st.binary(min_size=32, max_size=32), max_size=4),
    extents=st.none() | st.lists(st.tuples(st.integers(0, 2**40), st.integers(1, 2**30))),
    xattrs=st.just(()) | st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=8))),
    size=st.integers(0, 2**62),
    times=st.tuples(st.integers(-(2**70), 2**70), st.integers(-(2**63), 2**70)),
    flags=st.integers(0, 2**32 - 1),
    started=st.integers(0, 2**63 - 1),
    nlink=st.integers(2, 5),
)
def test_a_kept_read_comes_back_whole(
    chunks: list[bytes],
    extents: list[tuple[int, int]] | None,
    xattrs: list[tuple[str, bytes]] | tuple[()],
    size: int,
    times: tuple[int, int],
    flags: int,
    started: int,
    nlink: int,
) -> None:
    """Whatever the table keeps packed (or as it came, where packing cannot hold it: xattrs,
    extents, times past 64 bits), each other name gets the read back field for field."""
    links = LinkedReads()
    seen = _stat(11, size, times[0], times[1], nlink)
    content = Content(chunks, extents, size // 2)
    links.keep(seen, content, flags, tuple(xattrs), started)
    for left in range(nlink - 2, -1, -1):
        got = links.take(seen)
        assert got is not None
        assert (got.size, got.mtime_ns, got.ctime_ns) == (size, times[0], times[1])
        assert got.content == content and got.flags == flags and got.xattrs == tuple(xattrs)
        assert got.started == started and got.left == left
    assert links.take(seen) is None and len(links) == 0


def test_the_table_is_bounded_and_skips_single_names() -> None:
    links = LinkedReads(most=3)
    content = Content([], None, 0)
    links.keep(_stat(1, 0, 0, 0, 1), content, 0, (), 0)
    assert len(links) == 0
    for ino in range(10):
        links.keep(_stat(ino, 0, 0, 0, 2), content, 0, (), 0)
    assert len(links) == 3
    assert links.take(_stat(9, 0, 0, 0, 2)) is None  # not kept: read as before


def test_with_a_worker_process_every_name_is_backed_up(tmp_path: Path, vault: Vault) -> None:
    """Worker processes keep their own tables: a name met in another process is read there
    (correct either way)."""
    src = tmp_path / "src"
    data = _linked_tree(src)
    for i in range(40):
        (src / "a" / f"f{i:02}").write_bytes(os.urandom(100))
    opts = BackupOptions([str(src)], source="s", processes=1, processes_after=1, workers=1)
    summary = backup_files(vault, opts)
    assert summary.files == 46 and summary.processes == 1
    out = tmp_path / "out"
    restore_files(vault, vault.resolve_point(summary.point_id), RestoreOptions(str(out)))
    got = out / str(src).lstrip("/")
    for name, content in data.items():
        assert (got / "c" / f"{name}-again").read_bytes() == content
