"""A restored file created in the private staging folder already has its owner, and its mode
when it was created with it (files/metadata.py ``Fresh``): the ``fchown`` and ``fchmod`` that
would change nothing are skipped, and every other case still gets them."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from strongroom.files import BackupOptions, RestoreOptions, backup_files, restore_files
from strongroom.files.metadata import create_mode, process_umask
from strongroom.files.nodes import FILE, TEMP_PREFIX, Node
from strongroom.vault import Vault
from tests.files._support import assert_same, snapshot

AS_ROOT = os.geteuid() == 0
# (name, mode, uid, gid): modes the umask keeps, modes it would change, modes without owner
# write, special bits; owners this process has and others
FILES = [
    ("plain", 0o644, 0, 0),
    ("private", 0o600, 0, 0),
    ("script", 0o755, 0, 0),
    ("shared", 0o666, 0, 0),  # created 0644 under umask 022: fchmod
    ("readonly", 0o444, 0, 0),  # created 0600: fchmod
    ("setuid", 0o4755, 0, 0),  # special bits: fchmod
    ("sticky", 0o1644, 0, 0),
    ("theirs", 0o640, 1234, 5678),  # another owner: fchown
    ("group", 0o640, 0, 5678),
]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    root.mkdir()
    for name, mode, uid, gid in FILES:
        p = root / name
        p.write_bytes(name.encode() * 100)
        if AS_ROOT:
            os.chown(p, uid, gid)
        os.chmod(p, mode)
    return root


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _counted(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    calls: list[int] = []
    real: Callable[..., None] = getattr(os, name)

    def counting(fd: int, *args: Any) -> None:
        calls.append(fd)
        real(fd, *args)

    monkeypatch.setattr(os, name, counting)
    return calls


def _listed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The open files whose xattrs were listed."""
    calls: list[int] = []
    real = os.listxattr

    def counting(path: Any = None, *, follow_symlinks: bool = True) -> list[str]:
        if isinstance(path, int):
            calls.append(path)
        return real(path, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(os, "listxattr", counting)
    return calls


def _restore(vault: Vault, point: str, out: Path) -> None:
    opts = RestoreOptions(out, processes=0)
    summary = restore_files(vault, vault.resolve_point(point), opts)
    assert summary.errors == [] and summary.files == len(FILES)


def test_calls_that_change_nothing_are_skipped(
    tmp_path: Path, vault: Vault, source: Path, monkeypatch: pytest.MonkeyPatch, umask_022: None
) -> None:
    point = backup_files(vault, BackupOptions([str(source)], source="s")).point_id
    chowns, chmods = _counted(monkeypatch, "fchown"), _counted(monkeypatch, "fchmod")
    listed = _listed(monkeypatch)
    out = tmp_path / "out"
    _restore(vault, point, out)
    assert_same(snapshot(source, atime=False), snapshot(out / source.relative_to("/"), atime=False))
    # shared, readonly, setuid, sticky need their mode set; theirs and group their owner
    assert len(chmods) == 4
    assert len(chowns) == (2 if AS_ROOT else 0)
    # the staging folder has no xattrs, so a file born in it has none to list
    assert listed == []


@pytest.mark.skipif(not AS_ROOT, reason="a folder's group for another user needs root")
def test_a_set_group_id_target_gives_its_group_and_the_owner_is_set(
    tmp_path: Path, vault: Vault, source: Path, monkeypatch: pytest.MonkeyPatch, umask_022: None
) -> None:
    point = backup_files(vault, BackupOptions([str(source)], source="s")).point_id
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, 0, 4321)
    os.chmod(out, 0o2755)  # the staging folder below it inherits the group and the bit
    chowns = _counted(monkeypatch, "fchown")
    _restore(vault, point, out)
    assert_same(snapshot(source, atime=False), snapshot(out / source.relative_to("/"), atime=False))
    assert len(chowns) == len(FILES)  # every file was born in group 4321


@pytest.mark.skipif(shutil.which("setfacl") is None, reason="needs setfacl (acl)")
def test_a_default_acl_on_the_target_takes_the_full_path(
    tmp_path: Path, vault: Vault, source: Path, monkeypatch: pytest.MonkeyPatch, umask_022: None
) -> None:
    """A staging folder that inherits a default ACL is not private: files are created 0600,
    the inherited ACL removed, and every mode set."""
    point = backup_files(vault, BackupOptions([str(source)], source="s")).point_id
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["setfacl", "-d", "-m", "u:nobody:rwx", str(out)], check=True)
    chmods, listed = _counted(monkeypatch, "fchmod"), _listed(monkeypatch)
    _restore(vault, point, out)
    assert_same(snapshot(source, atime=False), snapshot(out / source.relative_to("/"), atime=False))
    assert len(chmods) == len(FILES) == len(listed)


def test_create_mode_keeps_owner_read_write() -> None:
    def node(mode: int) -> Node:
        return Node(name=b"f", kind=FILE, mode=mode)

    assert [create_mode(node(m)) for m in (0o644, 0o600, 0o755, 0o777)] == [
        0o644,
        0o600,
        0o755,
        0o777,
    ]
    # without owner read and write, or with special bits: 0600 and fchmod after
    assert [create_mode(node(m)) for m in (0o444, 0o200, 0o000, 0o4755, 0o1777)] == [0o600] * 5


def test_process_umask_is_the_umask(umask_022: None) -> None:
    assert process_umask() == 0o022
    os.umask(0o077)
    assert process_umask() == 0o077
    now = process_umask()
    assert os.umask(0o022) == now  # what the kernel reports is what os.umask gives back


# (name, mode, uid, gid, xattrs): folders the staged tree makes 0700 with its owner
FOLDERS = [
    ("open", 0o755, 0, 0, {}),
    ("private", 0o700, 0, 0, {}),
    ("readonly", 0o555, 0, 0, {}),
    ("setgid", 0o2775, 0, 0, {}),
    ("labelled", 0o755, 0, 0, {"user.note": b"kept"}),
    ("theirs", 0o750, 1234, 5678, {}),  # another owner: chown
]


def _path_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[bytes]:
    """The paths (not descriptors) ``os.<name>`` was called on."""
    calls: list[bytes] = []
    real: Callable[..., Any] = getattr(os, name)

    def counting(path: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(path, int):
            calls.append(os.fsencode(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, name, counting)
    return calls


@pytest.mark.parametrize("processes", [0, 1])
def test_folders_made_in_the_staged_tree_skip_what_they_have(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch, processes: int
) -> None:
    """A folder the restore made in its staged tree has the tree root's owner and no xattrs
    until its metadata is applied: no chown unless its owner differs, no listing of its
    xattrs; its mode and times are set, and it ends as the source's."""
    source = tmp_path / "src"
    for name, mode, uid, gid, xattrs in FOLDERS:
        folder = source / name / "inner"
        folder.mkdir(parents=True)
        (folder / "f").write_bytes(name.encode())
        for key, value in xattrs.items():
            os.setxattr(source / name, key, value)
        if AS_ROOT:
            os.chown(source / name, uid, gid)
        os.chmod(source / name, mode)
    point = backup_files(vault, BackupOptions([str(source)], source="s")).point_id
    chowns, listed = _path_calls(monkeypatch, "chown"), _path_calls(monkeypatch, "listxattr")
    chmods = _path_calls(monkeypatch, "chmod")
    out = tmp_path / "out"
    opts = RestoreOptions(out, processes=processes)
    summary = restore_files(vault, vault.resolve_point(point), opts)
    monkeypatch.undo()  # the snapshots list xattrs too
    assert summary.errors == [] and summary.processes == processes
    assert_same(snapshot(source, atime=False), snapshot(out / source.relative_to("/"), atime=False))
    restored = os.fsencode(out / source.relative_to("/"))
    folders = [p for p in chmods if p.startswith(restored + b"/")]
    assert len(folders) == 2 * len(FOLDERS)  # each folder's mode, and its inner one's
    staging = os.path.join(os.fsencode(out), TEMP_PREFIX)
    under = [p for p in listed if p.startswith(os.fsencode(out) + b"/")]
    assert all(p.startswith(staging) and p.endswith(b"/tree") for p in under)  # its root only
    owned = [os.path.basename(p) for p in chowns if p.startswith(os.fsencode(out))]
    assert owned == ([b"theirs"] if AS_ROOT else [])
