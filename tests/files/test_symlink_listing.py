"""A folder with no row to match has its symlinks' targets read as it is listed, each before
its one ``lstat`` (files/walklisting.py ``Targets``): the atime recorded is the one the read left,
so the next backup reuses the folder; a folder whose row did not match reads them as before."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from strongroom.files import BackupOptions, RestoreOptions, backup_files, restore_files
from strongroom.files.dirstate import DirState
from strongroom.files.reading import RACY_NS
from strongroom.files.walker import TreeWalker
from strongroom.files.walklisting import Targets
from strongroom.vault import Vault

LINKS = 40


@pytest.fixture
def after_readlink(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The symlinks read the old way (an lstat again after the read)."""
    seen: list[bytes] = []
    original = TreeWalker._after_readlink

    def record(self: TreeWalker, d: DirState, *args: Any) -> os.stat_result:
        seen.append(args[1])
        return original(self, d, *args)

    monkeypatch.setattr(TreeWalker, "_after_readlink", record)
    return seen


def test_symlinks_read_as_listed_and_their_folder_reused_next_time(
    ext4: Callable[[str], Path],
    tmp_path: Path,
    vault: Vault,
    after_readlink: list[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    filled: list[bytes] = []
    fill = TreeWalker._fill

    def record(self: TreeWalker, d: DirState, *args: Any, **kwargs: Any) -> Any:
        filled.append(d.path)
        return fill(self, d, *args, **kwargs)

    monkeypatch.setattr(TreeWalker, "_fill", record)
    root = ext4("links")  # relatime: a new symlink's first read moves its atime
    folder = root / "links"
    folder.mkdir()
    (folder / "file").write_bytes(b"data")
    for i in range(LINKS):
        os.symlink(f"target/{i:03}" * (1 + i % 5), folder / f"l{i:03}")
    time.sleep(RACY_NS / 1e9)
    before = {p.name: os.lstat(p).st_atime_ns for p in folder.iterdir() if p.is_symlink()}
    opts = BackupOptions([str(root)], source="s", processes=0, cache_root=tmp_path / "cache")
    first = backup_files(vault, opts)
    assert after_readlink == [] and os.fsencode(folder) in filled  # no second lstat
    filled.clear()
    after = {p.name: os.lstat(p).st_atime_ns for p in folder.iterdir() if p.is_symlink()}
    assert after != before  # the reads moved the atimes the nodes record
    second = backup_files(vault, opts)
    assert second.files_unchanged == first.files
    assert os.fsencode(folder) not in filled  # its row matched: not built again
    assert after_readlink == []
    (folder / "new").write_bytes(b"more")  # its row no longer matches: read the old way
    time.sleep(RACY_NS / 1e9)
    third = backup_files(vault, opts)
    assert sorted(after_readlink) == sorted(os.fsencode(n) for n in before)
    out = tmp_path / "out"
    restore_files(vault, vault.resolve_point(third.point_id), RestoreOptions(out))
    got = out / str(folder).lstrip("/")
    for name in before:
        assert os.readlink(got / name) == os.readlink(folder / name)


def _lstat(mode: int, ctime_ns: int) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, 0, 0, 3, 0, 0, 0) + (0.0,) * 3
                          + (0, 0, ctime_ns, 4096, 0, 0))  # fmt: skip


def test_a_symlink_made_since_the_listing_began_gets_no_folder_row() -> None:
    targets = Targets()
    targets.targets = {b"old": b"t1", b"new": b"t2", b"file": b"t3"}
    d = DirState(b"/x", None, None)
    assert targets.take(b"old", _lstat(0o120777, targets.since - 2 * RACY_NS), d) == b"t1"
    assert d.clean
    # not a symlink by its lstat (replaced since its read): read the usual way
    assert targets.take(b"file", _lstat(0o100644, 0), d) is None and d.clean
    assert targets.take(b"new", _lstat(0o120777, targets.since), d) == b"t2"
    assert not d.clean  # it may have replaced the one whose target was read
