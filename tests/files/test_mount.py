"""``strongroom mount``: real FUSE mounts served by a child process (root, /dev/fuse)."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from strongroom.errors import FilesError
from strongroom.files import BackupOptions, backup_files
from strongroom.files.mount import check_mount_dir
from strongroom.files.mountfs import PointFS
from strongroom.vault import Vault
from tests.constants import PASSPHRASE
from tests.files._support import assert_same, build_every_kind, snapshot
from tests.fusemount import Mounts

pytestmark = pytest.mark.skipif(
    not os.path.exists("/dev/fuse") or os.geteuid() != 0, reason="needs /dev/fuse and root"
)
Mount = Callable[..., subprocess.Popen[bytes]]


def _env(vault_dir: Path, tmp_path: Path) -> dict[str, str]:
    pw = tmp_path / "pw"
    pw.write_text(PASSPHRASE)
    return {**os.environ, "STRONGROOM_VAULT": str(vault_dir), "STRONGROOM_PASSWORD_FILE": str(pw)}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "strongroom.cli.main", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def mount(vault_dir: Path, tmp_path: Path) -> Iterator[Mount]:
    mounts = Mounts(_env(vault_dir, tmp_path))
    yield mounts.start
    mounts.close()


def _backup(vault: Vault, root: Path) -> str:
    backup_files(vault, BackupOptions([str(root)], source="t"))
    return vault.resolve_point("latest", source="t").point_id


def _comparable(snap: dict[bytes, dict[str, Any]]) -> dict[bytes, dict[str, Any]]:
    """Without where the data lies on disk: FUSE has no SEEK_DATA (holes read as zeros,
    which the content hash covers) and a file's blocks are the original file system's."""
    skip = {"extents", "blocks"}
    return {k: {f: v for f, v in rec.items() if f not in skip} for k, rec in snap.items()}


def test_mount_shows_the_tree_as_backed_up(
    tmp_path: Path, vault: Vault, mount: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = build_every_kind(tmp_path / "src")
    point = _backup(vault, tree.root)
    before = snapshot(tree.root)  # as the backup left it: reading a symlink moves its atime
    where = tmp_path / "mnt"
    where.mkdir()
    mount(point[:12], where)
    assert os.listdir(where) == [os.path.relpath(tree.root, "/").split("/")[0]]
    inside = where / os.path.relpath(tree.root.resolve(), "/")
    with monkeypatch.context() as m:  # snapshot puts atimes back: not on a read-only mount
        m.setattr(os, "utime", lambda *a, **k: None)
        seen = snapshot(inside)
    assert_same(_comparable(before), _comparable(seen))
    small, hard = os.lstat(inside / "small.txt"), os.lstat(inside / "dir" / "hard1")
    assert small.st_ino == hard.st_ino and small.st_nlink > 1
    assert (inside / "sparse").read_bytes() == (tree.root / "sparse").read_bytes()
    assert os.readlink(inside / "rel-link") == "small.txt"
    assert os.getxattr(inside / "xattrs", "user.binary") == bytes(range(256))


def test_writes_are_refused(tmp_path: Path, vault: Vault, mount: Mount) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data")
    where = tmp_path / "mnt"
    where.mkdir()
    mount(_backup(vault, src), where)
    inside = where / os.path.relpath(src.resolve(), "/")
    for attempt in (
        lambda: (inside / "f").write_bytes(b"x"),
        lambda: (inside / "new").write_bytes(b"x"),
        (inside / "f").unlink,
        (inside / "d").mkdir,
        lambda: os.setxattr(inside / "f", "user.x", b"1"),
    ):
        with pytest.raises(OSError) as exc:
            attempt()
        assert exc.value.errno == errno.EROFS
    assert (inside / "f").read_bytes() == b"data"


def test_random_reads_of_a_large_file(tmp_path: Path, vault: Vault, mount: Mount) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = random.Random(7).randbytes(12 << 20)
    (src / "big").write_bytes(data)
    where = tmp_path / "mnt"
    where.mkdir()
    mount(_backup(vault, src), where)
    rng = random.Random(1)
    fd = os.open(where / os.path.relpath(src.resolve(), "/") / "big", os.O_RDONLY)
    try:
        for _ in range(200):
            offset = rng.randrange(len(data) + 100)
            size = rng.choice([1, 17, 4096, 70_000, 1 << 20])
            assert os.pread(fd, size, offset) == data[offset : offset + size]
    finally:
        os.close(fd)


class _Counting:
    """A vault that counts the chunks read through it."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.vault, name)

    def read_chunk(self, chunk_id: bytes) -> bytes:
        self.reads += 1
        return self.vault.read_chunk(chunk_id)


def test_a_read_fetches_only_the_chunks_it_covers(tmp_path: Path, vault: Vault) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = random.Random(3).randbytes(16 << 20)
    (src / "big").write_bytes(data)
    point = vault.resolve_point(_backup(vault, src))
    counting = _Counting(vault)
    fs = PointFS(counting, point)
    path = os.fsencode(src.resolve()) + b"/big"
    node = fs.lookup(path)
    assert len(node.chunks) > 4
    ino = fs.inode(path, node)
    assert fs.read(ino, node, 100, 9_000_000) == data[9_000_000:9_000_100]
    assert counting.reads <= 2
    assert fs.read(ino, node, 50, 9_000_050) == data[9_000_050:9_000_100]
    assert counting.reads <= 2  # the chunk cache answered


def test_bad_mount_points_get_one_line(
    tmp_path: Path, vault: Vault, vault_dir: Path, mount: Mount
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"f")
    point = _backup(vault, src)
    env = _env(vault_dir, tmp_path)
    (tmp_path / "file").write_bytes(b"")
    busy = tmp_path / "busy"
    busy.mkdir()
    mount(point, busy)
    cases = {
        str(tmp_path / "missing"): "no such folder",
        str(tmp_path / "file"): "not a folder",
        str(src): "busy (not empty",
        str(busy): "busy (already a mount point)",
    }
    for where, message in cases.items():
        r = _cli(env, "mount", point, where)
        assert r.returncode == 1, r
        assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FilesError, match="no /nonexistent/fuse"):
        check_mount_dir(str(empty), "/nonexistent/fuse")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_unmounts(tmp_path: Path, vault: Vault, mount: Mount, sig: int) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"f")
    where = tmp_path / "mnt"
    where.mkdir()
    proc = mount(_backup(vault, src), where)
    proc.send_signal(sig)
    assert proc.wait(15) == 0
    assert not os.path.ismount(where)
    assert os.listdir(where) == []


def test_a_damaged_chunk_fails_that_read_only(
    tmp_path: Path, vault: Vault, vault_dir: Path, mount: Mount
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "bad").write_bytes(random.Random(5).randbytes(3 << 20))
    (src / "good").write_bytes(b"fine")
    point = vault.resolve_point(_backup(vault, src))
    node = PointFS(vault, point).lookup(os.fsencode(src.resolve()) + b"/bad")
    _, where_ = vault.locate(node.chunks[1:2])[0]
    assert where_ is not None
    hexname = where_.pack.hex()
    pack = vault_dir / "data" / hexname[:2] / hexname
    with open(pack, "r+b") as f:  # flip bytes inside the second chunk's ciphertext
        f.seek(where_.offset + where_.length // 2)
        f.write(b"\xff" * 16)
    where = tmp_path / "mnt"
    where.mkdir()
    mount(point.point_id, where)
    inside = where / os.path.relpath(src.resolve(), "/")
    with pytest.raises(OSError) as exc:
        (inside / "bad").read_bytes()
    assert exc.value.errno == errno.EIO
    assert (inside / "good").read_bytes() == b"fine"  # the mount goes on


def test_a_stale_mount_is_named(
    tmp_path: Path, vault: Vault, vault_dir: Path, mount: Mount
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"f")
    point = _backup(vault, src)
    where = tmp_path / "mnt"
    where.mkdir()
    proc = mount(point, where)
    proc.kill()  # no unmount: the folder is left a dead FUSE mount
    proc.wait()
    r = _cli(_env(vault_dir, tmp_path), "mount", point, str(where))
    assert r.returncode == 1 and "stale FUSE mount" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1
