"""Bad input: missing paths, bad targets, no space, unknown paths, ambiguous points."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from strongroom.errors import AmbiguousPoint, FilesError
from strongroom.files import BackupOptions, RestoreOptions, backup_files, restore_files
from strongroom.vault import Vault


@pytest.fixture
def point_src(tmp_path: Path, vault: Vault) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(200_000))
    (src / "g").write_text("g")
    backup_files(vault, BackupOptions([str(src)], source="b"))
    return src


def test_missing_source_path_writes_nothing(tmp_path: Path, vault: Vault) -> None:
    (tmp_path / "real").mkdir()
    with pytest.raises(FilesError, match="nope: No such file"):
        backup_files(vault, BackupOptions([str(tmp_path / "real"), str(tmp_path / "nope")]))
    assert vault.points() == []
    assert list(vault.backend.list("data/")) == []
    assert list(vault.backend.list("locks/")) == []


def test_vault_inside_source_is_left_out(tmp_path: Path, vault: Vault, vault_dir: Path) -> None:
    (tmp_path / "file").write_text("x")
    summary = backup_files(vault, BackupOptions([str(tmp_path)], source="s"))
    assert (str(vault_dir), "strongroom's own vault or cache") in summary.skipped
    point = vault.resolve_point(summary.point_id)
    from strongroom.files import list_point

    listed = {os.fsdecode(p) for p, _ in list_point(vault, point, str(tmp_path))}
    assert str(tmp_path / "file") in listed
    assert str(vault_dir) not in listed


def test_restore_target_inside_vault_refused(
    vault: Vault, vault_dir: Path, point_src: Path
) -> None:
    with pytest.raises(FilesError, match="inside the vault"):
        restore_files(vault, vault.resolve_point("latest"), RestoreOptions(vault_dir / "x"))


def test_restore_target_not_a_directory(tmp_path: Path, vault: Vault, point_src: Path) -> None:
    (tmp_path / "afile").write_text("")
    with pytest.raises(FilesError, match="not a directory"):
        restore_files(vault, vault.resolve_point("latest"), RestoreOptions(tmp_path / "afile"))


def test_restore_target_not_writable(tmp_path: Path, vault: Vault, point_src: Path) -> None:
    target = tmp_path / "ro"
    target.mkdir()
    subprocess.run(["chattr", "+i", str(target)], check=True)
    try:
        with pytest.raises(FilesError, match="not writable"):
            restore_files(vault, vault.resolve_point("latest"), RestoreOptions(target))
    finally:
        subprocess.run(["chattr", "-i", str(target)], check=True)
    assert list(target.iterdir()) == []


def test_path_not_in_point(tmp_path: Path, vault: Vault, point_src: Path) -> None:
    point = vault.resolve_point("latest")
    with pytest.raises(FilesError, match="not in this recovery point"):
        restore_files(vault, point, RestoreOptions(tmp_path / "o", [str(point_src / "nothing")]))
    with pytest.raises(FilesError, match="no path in this recovery point matches"):
        restore_files(vault, point, RestoreOptions(tmp_path / "o", ["*.nothing"]))


def test_ambiguous_point(tmp_path: Path, vault: Vault, point_src: Path) -> None:
    for _ in range(20):
        backup_files(vault, BackupOptions([str(point_src)], source="b", tags=["x"]))
    with pytest.raises(AmbiguousPoint):
        vault.resolve_point("", kind="files")
    firsts = [p.point_id[0] for p in vault.points()]
    dup = next(c for c in firsts if firsts.count(c) > 1)
    with pytest.raises(AmbiguousPoint):
        vault.resolve_point(dup)


def test_out_of_space_leaves_no_file(
    tmp_path: Path, vault: Vault, point_src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.pwrite
    target = tmp_path / "full"

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        if len(data) > 1000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    with pytest.raises(FilesError, match=r"no space left on device while restoring .*/f"):
        restore_files(vault, vault.resolve_point("latest"), RestoreOptions(target))
    leftovers = [n for _, _, files in os.walk(target) for n in files]
    assert leftovers == []


def test_out_of_space_on_a_real_small_file_system(
    tmp_path: Path, vault: Vault, point_src: Path
) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)]
    if subprocess.run(mount, check=False, capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with pytest.raises(FilesError, match="space"):
            restore_files(vault, vault.resolve_point("latest"), RestoreOptions(mnt))
        assert [n for _, _, files in os.walk(mnt) for n in files] == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("wrap", ["faults", "retry"])
def test_wrapped_local_vault_is_still_left_out_and_refused(tmp_path: Path, wrap: str) -> None:
    """A wrapped local backend (faults, retries) is no LocalBackend, yet the vault folder is
    still its folder: the engines ask the storage's capabilities, not its class."""
    from strongroom.storage import LocalBackend, RetryingBackend
    from tests.conftest import FAST_KDF, PASSPHRASE
    from tests.faults import FaultyBackend

    vault_dir = tmp_path / "vault"
    inner = LocalBackend(vault_dir)
    backend = FaultyBackend(inner) if wrap == "faults" else RetryingBackend(inner)
    vault = Vault.init(backend, PASSPHRASE, kdf=FAST_KDF)
    assert vault.capabilities == inner.capabilities
    (tmp_path / "file").write_text("x")
    summary = backup_files(vault, BackupOptions([str(tmp_path)], source="s"))
    assert (str(vault_dir), "strongroom's own vault or cache") in summary.skipped
    with pytest.raises(FilesError, match="inside the vault"):
        restore_files(vault, vault.resolve_point("latest"), RestoreOptions(vault_dir / "x"))
