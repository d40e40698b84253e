"""LocalBackend specifics: crash safety, full disks, read-only disks, temporary files."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import strongroom
from strongroom.errors import (
    ObjectNotFound,
    PermanentStorageError,
    ReadOnlyStorage,
    StorageFull,
    TransientStorageError,
)
from strongroom.storage.local import LocalBackend, os_error_to_storage
from strongroom.storage.names import TEMP_PREFIX

WRITER = Path(__file__).with_name("crash_writer.py")
SRC = Path(strongroom.__file__).resolve().parents[1]


def all_files(root: Path) -> list[Path]:
    return [Path(d) / f for d, _, files in os.walk(root) for f in files]


def temp_files(root: Path) -> list[Path]:
    return [p for p in all_files(root) if p.name.startswith(TEMP_PREFIX)]


def run_and_kill(root: Path, seed: int, delay: float) -> list[str]:
    """Start a writer, SIGKILL it after ``delay`` seconds, return the names it finished."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(root), str(seed)],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n", "the writer did not start"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return [line.split()[1] for line in out.decode().splitlines() if line.startswith("done ")]


@pytest.mark.slow
def test_sigkill_during_writes_leaves_no_partial_object(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    rng = random.Random(42)
    finished: list[str] = []
    for run in range(6):
        finished += run_and_kill(root, seed=run, delay=rng.uniform(0.05, 0.6))
    backend = LocalBackend(root)
    # A planted leftover makes the temp file checks meaningful even if no kill hit a write.
    (root / "data" / f"{TEMP_PREFIX}planted").write_bytes(b"half an object")

    listed = [info.name for info in backend.list()]
    assert finished, "no writer finished a single object: the test proves nothing"
    assert set(finished) <= set(listed)
    for name in listed:
        assert hashlib.sha256(backend.get(name)).hexdigest() == name.rpartition("/")[2]
    for path in all_files(root):
        if not path.name.startswith(TEMP_PREFIX):
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name

    leftovers = temp_files(root)
    assert leftovers
    assert not any(TEMP_PREFIX in name for name in listed)
    assert backend.cleanup_temp(older_than_seconds=3600) == 0  # all still fresh
    assert backend.cleanup_temp(older_than_seconds=0) == len(leftovers)
    assert temp_files(root) == []
    assert sorted(info.name for info in backend.list()) == sorted(listed)


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, mounted read-write; needs root, as on this project's machines."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root; run the storage tests as root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_disk_full_is_permanent_and_leaves_nothing(mount_tmpfs: Path) -> None:
    backend = LocalBackend(mount_tmpfs)
    with pytest.raises(PermanentStorageError) as info:
        backend.put("data/ab/big", os.urandom(2 * 1024 * 1024))
    assert "no space left on device" in str(info.value)
    assert "data/ab/big" in str(info.value)
    assert all_files(mount_tmpfs) == []
    assert list(backend.list()) == []
    backend.put("data/ab/small", b"fits")  # the failed write freed its space
    assert backend.get("data/ab/small") == b"fits"


def test_read_only_disk_is_permanent(mount_tmpfs: Path) -> None:
    backend = LocalBackend(mount_tmpfs)
    backend.put("data/x", b"x")
    subprocess.run(["mount", "-o", "remount,ro", str(mount_tmpfs)], check=True)
    with pytest.raises(PermanentStorageError, match="read-only file system"):
        backend.put("data/y", b"y")
    assert backend.get("data/x") == b"x"
    with pytest.raises(PermanentStorageError):
        backend.delete("data/x")


@pytest.mark.parametrize(
    ("code", "reading", "expected"),
    [
        (errno.ENOENT, True, ObjectNotFound),
        (errno.ENOTDIR, True, ObjectNotFound),
        (errno.ENOENT, False, PermanentStorageError),
        (errno.ENOSPC, False, StorageFull),
        (errno.EDQUOT, False, StorageFull),
        (errno.EACCES, True, ReadOnlyStorage),
        (errno.EPERM, False, ReadOnlyStorage),
        (errno.EROFS, False, ReadOnlyStorage),
        (errno.ENAMETOOLONG, False, PermanentStorageError),
        (errno.EIO, True, TransientStorageError),
        (errno.EAGAIN, False, TransientStorageError),
        (errno.EINTR, False, TransientStorageError),
    ],
)
def test_os_error_classification(code: int, reading: bool, expected: type[Exception]) -> None:
    error = os_error_to_storage(
        OSError(code, os.strerror(code)), "writing", "a/b", "/v", reading=reading
    )
    assert type(error) is expected
    assert error.name == "a/b"
    assert "a/b" in str(error)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM])
def test_a_denied_read_is_not_read_only_storage(code: int) -> None:
    """Read-only means "takes no writes": a read that is refused is another problem."""
    error = os_error_to_storage(OSError(code, "denied"), "reading", "a/b", "/v", reading=True)
    assert type(error) is PermanentStorageError


def test_disk_quota_message() -> None:
    error = os_error_to_storage(
        OSError(errno.EDQUOT, "x"), "writing", "data/1", "/v", reading=False
    )
    assert str(error) == "disk quota exceeded while writing data/1 in /v"


def test_puts_leave_no_temp_files(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "v")
    for i in range(20):
        backend.put(f"data/{i % 3}/{i}", bytes(i))
    assert temp_files(tmp_path) == []
    assert len(list(backend.list())) == 20


def test_cleanup_temp_respects_age(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    backend.put("data/aa/x", b"x")
    old = tmp_path / "data" / "aa" / f"{TEMP_PREFIX}old"
    fresh = tmp_path / f"{TEMP_PREFIX}fresh"
    old.write_bytes(b"o")
    fresh.write_bytes(b"f")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert [i.name for i in backend.list()] == ["data/aa/x"]
    assert backend.cleanup_temp(older_than_seconds=3600) == 1
    assert not old.exists()
    assert fresh.exists()


def test_folder_removed_behind_its_back(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "v")
    backend.put("data/ab/1", b"1")
    (tmp_path / "v" / "data" / "ab" / "1").unlink()
    (tmp_path / "v" / "data" / "ab").rmdir()
    backend.put("data/ab/2", b"2")
    assert backend.get("data/ab/2") == b"2"


def test_names_that_collide_with_folders(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    backend.put("data/ab/1", b"1")
    backend.put("plain", b"p")
    with pytest.raises(ObjectNotFound):
        backend.get("data")  # a folder is not an object
    with pytest.raises(ObjectNotFound):
        backend.stat("data/ab")
    with pytest.raises(ObjectNotFound):
        backend.get("plain/x")
    with pytest.raises(PermanentStorageError):
        backend.put("plain/x", b"x")  # cannot make a folder where an object is
    with pytest.raises(PermanentStorageError):
        backend.put("data", b"x")  # nor an object where a folder is


def test_missing_root_is_an_empty_vault(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "not" / "yet")
    assert list(backend.list()) == []
    with pytest.raises(ObjectNotFound):
        backend.get("config")
    backend.put("config", b"c")  # creates the root and its parents
    assert backend.get("config") == b"c"


def test_relative_root_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    backend = LocalBackend(Path("vault"))
    backend.put("keys/one", b"1")
    monkeypatch.chdir("/")
    assert backend.get("keys/one") == b"1"
    assert (tmp_path / "vault" / "keys" / "one").read_bytes() == b"1"
