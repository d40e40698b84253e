"""A subfolder's xattrs and inode flags: read from the descriptor it is listed through
(``TreeWalker._own_meta``), or by path where this walk does not list it (a folder handed to a
worker process, a worker's one-level listing, a mount point left out, a folder rebuilt from
its matched row, no-dump exclusion).  Every route records what the folder has."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from strongroom.files import BackupOptions, backup_files
from strongroom.files.metadata import FL_NOATIME, FL_NODUMP, read_flags, read_xattrs
from strongroom.files.tree import TreeReader, root_node
from strongroom.files.walker import TreeWalker
from strongroom.vault import Vault
from tests.files._support import workers_up_before_the_walk

Truth = dict[str, tuple[tuple[tuple[str, bytes], ...], int]]


def _tag(path: Path, flags: str | None) -> None:
    os.setxattr(path, "user.where", str(path).encode())
    if flags is not None:
        subprocess.run(["chattr", flags, str(path)], check=True)


def _tree(root: Path) -> Path:
    src = root / "src"
    chain = src / "deep" / "b" / "c" / "d"
    chain.mkdir(parents=True)
    (chain / "leaf.txt").write_bytes(b"leaf")
    for i in range(6):
        wide = src / f"w{i}"
        for j in range(4):
            sub = wide / f"s{j}"
            sub.mkdir(parents=True)
            (sub / "f.txt").write_bytes(b"x" * (100 * j + i))
            _tag(sub, "+A" if j % 2 else None)
        _tag(wide, "+d" if i == 3 else None)
    (src / "empty").mkdir()
    _tag(src / "empty", "+A")
    for part in (src, src / "deep", src / "deep" / "b", src / "deep" / "b" / "c", chain):
        _tag(part, "+A" if part.name in ("b", "d", "src") else None)
    return src


def _truth(src: Path) -> Truth:
    found: Truth = {}
    for folder, _, _ in os.walk(src):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            found[folder] = (read_xattrs(fd), read_flags(fd))
        finally:
            os.close(fd)
    return found


def _recorded(vault: Vault, source: str, truth: Truth) -> Truth:
    reader = TreeReader(vault)
    root = root_node(vault.resolve_point("latest", source=source))
    got: Truth = {}
    for folder in truth:
        node = reader.lookup(root, folder)
        assert node is not None, folder
        got[folder] = (tuple(node.xattrs), node.flags)
    return got


def _check(vault: Vault, src: Path, source: str, **more: Any) -> None:
    opts = BackupOptions([str(src)], source=source, **more)
    summary = backup_files(vault, opts)
    assert summary.errors == []
    want = _truth(src)
    assert _recorded(vault, source, want) == want
    assert want[str(src)][1] == FL_NOATIME  # the selected folder's node too
    assert want[str(src / "deep" / "b")][1] == FL_NOATIME  # the tree does hold flags
    assert want[str(src / "w3")][1] == FL_NODUMP
    assert dict(want[str(src / "w0" / "s1")][0]) == {"user.where": str(src / "w0/s1").encode()}


@pytest.fixture
def src(ext4: Callable[[str], Path]) -> Path:
    made = _tree(ext4("a"))
    time.sleep(0.2)  # out of the racy window: rows for every folder
    return made


def test_one_process_reads_them_as_it_lists(vault: Vault, src: Path) -> None:
    _check(vault, src, "one", processes=0)


def test_worker_processes_read_them_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, vault: Vault, src: Path
) -> None:
    """Subtrees handed out whole and one level at a time (near the top): the parent reads a
    handed-out folder's by path, a worker those of the subfolders it sends back."""
    workers_up_before_the_walk(monkeypatch)
    monkeypatch.setattr(TreeWalker, "helps", False)
    _check(vault, src, "two", processes=2, processes_after=1, cache_root=tmp_path / "c")


def test_no_dump_exclusion_reads_them_as_the_parent_is_listed(vault: Vault, src: Path) -> None:
    opts = BackupOptions([str(src)], source="nd", exclude_nodump=True, processes=0)
    assert backup_files(vault, opts).errors == []
    truth = {k: v for k, v in _truth(src).items() if "/w3" not in k}
    reader = TreeReader(vault)
    root = root_node(vault.resolve_point("latest", source="nd"))
    assert reader.lookup(root, str(src / "w3")) is None
    for folder, (xattrs, flags) in truth.items():
        node = reader.lookup(root, folder)
        assert node is not None, folder
        assert (tuple(node.xattrs), node.flags) == (xattrs, flags), folder


def test_a_folder_rebuilt_from_its_row_keeps_them(tmp_path: Path, vault: Vault, src: Path) -> None:
    """A folder whose entries match its row but one of whose subfolders changed is built
    from the entries listed (walkrows._rebuild): its subfolders are done, their metadata is
    read by path then."""
    common: dict[str, Any] = {"processes": 0, "cache_root": tmp_path / "c"}
    _check(vault, src, "rb", **common)
    # a file's content changes: its folder's tree changes, not its parent's entries
    leaf = src / "deep" / "b" / "c" / "d" / "leaf.txt"
    st = leaf.stat()
    leaf.write_bytes(b"LEAF")
    os.utime(leaf, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    time.sleep(0.2)
    summary = backup_files(vault, BackupOptions([str(src)], source="rb", **common))
    assert summary.errors == [] and summary.files_changed == 1 and summary.dirs_reused > 0
    truth = _truth(src)
    assert _recorded(vault, "rb", truth) == truth


@pytest.fixture
def mounted(ext4: Callable[[str], Path], src: Path) -> Iterator[Path]:
    inner = ext4("inner")
    (inner / "inside.txt").write_bytes(b"not backed up with one_file_system")
    point = src / "mnt"
    point.mkdir()
    subprocess.run(["mount", "--bind", str(inner), str(point)], check=True)
    _tag(point, "+A")  # the mounted file system's root: what the walk records
    try:
        yield point
    finally:
        subprocess.run(["chattr", "-A", str(point)], check=False)
        subprocess.run(["umount", str(point)], check=True)


def test_a_mount_point_left_out_keeps_them(vault: Vault, src: Path, mounted: Path) -> None:
    opts = BackupOptions([str(src)], source="m", one_file_system=True, processes=0)
    assert backup_files(vault, opts).errors == []
    root = root_node(vault.resolve_point("latest", source="m"))
    node = TreeReader(vault).lookup(root, str(mounted))
    assert node is not None and node.flags == FL_NOATIME
    assert dict(node.xattrs) == {"user.where": str(mounted).encode()}
    assert TreeReader(vault).lookup(root, str(mounted / "inside.txt")) is None
