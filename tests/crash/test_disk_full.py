"""Disk full: a backup into a small file system fails cleanly and the vault stays usable."""

from __future__ import annotations

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
