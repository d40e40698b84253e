"""Disk full: a backup into a small file system fails cleanly and the vault stays usable."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.storage import LocalBackend
from strongroom.vault import Vault, VaultSettings
from tests.conftest import FAST_KDF, PASSPHRASE
from tests.crash._support import (
    checked,
    cli,
    make_tree,
    ok,
    open_vault,
    restored_tree,
    snapshot_tree,
    temp_files,
    unindexed_packs,
)
from tests.loopfs import mounted


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs (needs root: CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("pack_mib", [1, 4], ids=["packs-put-whole", "packs-streamed"])
def test_backup_into_a_full_disk(small_fs: Path, tmp_path: Path, pack_mib: int) -> None:
    vault = small_fs / "vault"
    settings = VaultSettings(pack_size=pack_mib << 20, soft_delete_days=0)
    Vault.init(LocalBackend(vault), PASSPHRASE, kdf=FAST_KDF, settings=settings)
    ballast = small_fs / "ballast"
    ballast.write_bytes(b"\0" * (1 << 20))
    big, small = tmp_path / "big", tmp_path / "small-src"
    make_tree(big, seed=1, files=24, size=1_000_000)  # ~12 MiB, mostly incompressible
    make_tree(small, seed=2, files=4, size=400_000)

    failed = cli(vault, "backup", "files", str(big), "--source", "big")
    assert failed.code == 1, failed.err
    assert "no space left on device" in failed.err and "\n" not in failed.err.strip()
    assert open_vault(vault).points() == []
    checked(vault, read_data=True)
    assert not list((vault / "locks").iterdir())

    ballast.unlink()  # the administrator frees some space...
    doc = ok(cli(vault, "prune", "--grace-hours", "0", "--json")).json()
    assert doc["orphan_packs"] or doc["packs_deleted"]  # ...and prune reclaims the rest
    assert not unindexed_packs(vault) and not temp_files(vault)
    backed = ok(cli(vault, "backup", "files", str(small), "--source", "small", "--json")).json()
    got = restored_tree(vault, str(backed["point"]), small, tmp_path / "restored")
    assert got == snapshot_tree(small)
    assert not checked(vault).problems


def _fill(path: Path) -> None:
    """Write ``path`` until the file system has no free byte left (another program filling
    the disk).  Again after each ``fsync``: ext4 reserves blocks for delayed allocation and
    gives back what the write-back did not need, so a disk "full" before the write-back had
    blocks free after it, and a prune started then found room (a CI run failed so)."""
    chunk = b"\xa5" * (64 << 10)
    with path.open("ab", buffering=0) as f:
        for _ in range(20):
            for size in (64 << 10, 4096, 512, 1):
                try:
                    while True:
                        f.write(chunk[:size])
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
            os.fsync(f.fileno())
            if _free(path.parent) == 0:
                return
    raise AssertionError("the file system kept freeing space")


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB ext4 file system on a loop device (no root reserve), mounted."""
    with mounted(tmp_path, "ext4") as mount:
        yield mount


@pytest.mark.slow
def test_prune_frees_a_full_disk(ext4: Path, tmp_path: Path) -> None:
    """Backups fill the disk, something else takes the last byte; forget and prune still
    work, free space, and the points kept restore exactly."""
    vault = ext4 / "vault"
    settings = VaultSettings(pack_size=1 << 20, soft_delete_days=0)
    Vault.init(LocalBackend(vault), PASSPHRASE, kdf=FAST_KDF, settings=settings)
    cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}  # not on the small disk
    backed: list[Path] = []
    for n in range(20):
        source = tmp_path / f"src{n}"
        make_tree(source, seed=10 + n, files=8, size=1_500_000)  # ~6 MiB, half incompressible
        run = cli(vault, "backup", "files", str(source), "--source", "s", env=cache)
        if not run.code:
            backed.append(source)
        else:
            assert "no space left on device" in run.err, run.err
            break
    else:
        raise AssertionError("the disk never filled up")
    assert len(backed) >= 3
    assert (vault / ".reserve").stat().st_size > 0  # backups keep the reserve
    _fill(ext4 / "filler")
    ok(cli(vault, "forget", "--keep-last", "2"))
    _fill(ext4 / "filler")  # full again: prune's lock needs the reserve
    before = _free(ext4)

    doc = ok(cli(vault, "prune", "--grace-hours", "0", "--json")).json()
    assert doc["full_disk"] and doc["points_removed"] and doc["packs_deleted"]
    assert _free(ext4) - before > (8 << 20)
    assert (vault / ".reserve").stat().st_size > 0  # grown back
    assert not temp_files(vault)
    kept = open_vault(vault).points()
    assert len(kept) == 2
    for point, source in zip(kept, backed[-2:], strict=True):
        got = restored_tree(vault, point.point_id, source, tmp_path / f"out-{point.short_id}")
        assert got == snapshot_tree(source)
    report = checked(vault, read_data=True)
    assert not report.problems, [f"{p.name}: {p.message}" for p in report.problems]
    (ext4 / "filler").unlink()
    ok(
        cli(vault, "prune", "--grace-hours", "0", env=cache)
    )  # the normal prune now finishes the job
    assert not checked(vault, read_data=True).problems
