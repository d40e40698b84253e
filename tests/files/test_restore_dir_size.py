"""A restore leaves its folders no bigger than the originals: temporaries are made in one
staging folder and renamed in, so a folder never holds a temporary name (an ext4 directory
never shrinks, and one temporary name per file had grown it for good)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from strongroom.files import BackupOptions, RestoreOptions, backup_files, restore_files
from strongroom.files.nodes import TEMP_PREFIX
from strongroom.vault import Vault


def test_restored_folder_is_not_bigger_than_the_original(
    ext4: Callable[[str], Path], vault: Vault
) -> None:
    src = ext4("a") / "bin"
    src.mkdir()
    for i in range(2000):
        (src / f"f{i}").write_bytes(b"%d" % i)
    assert backup_files(vault, BackupOptions([str(src)], source="sz")).errors == []
    dst = ext4("b")
    point = vault.resolve_point("latest", source="sz")
    summary = restore_files(vault, point, RestoreOptions(dst))
    assert summary.errors == [] and summary.files == 2000
    out = dst / os.path.relpath(src, "/")
    # ext4's hashed directories split their leaves by each file system's own hash seed and
    # the order names arrive in, so equal content may differ by a block or two (44,032 against
    # 40,960 seen); a temporary name per file had made this one 117,760 against 39,936
    assert os.lstat(out).st_size <= os.lstat(src).st_size * 5 // 4
    assert len(os.listdir(out)) == 2000
    # the staging folder is gone, and nothing else is left at the target's root
    assert not [n for n in os.listdir(dst) if n.startswith(os.fsdecode(TEMP_PREFIX))]


def test_a_mount_point_below_the_target_gets_its_temporaries_beside_them(
    ext4: Callable[[str], Path], vault: Vault, tmp_path: Path
) -> None:
    """A rename cannot cross file systems: a folder on another one than the target's root
    gets its temporaries in itself (as before the staging folder)."""
    src = tmp_path / "src"
    (src / "m").mkdir(parents=True)
    (src / "top.txt").write_bytes(b"top")
    (src / "m" / "inner.txt").write_bytes(b"inner")
    assert backup_files(vault, BackupOptions([str(src)], source="mp")).errors == []
    target = tmp_path / "out"
    mounted = target / os.path.relpath(src, "/") / "m"
    mounted.mkdir(parents=True)
    mount = ext4("m")
    subprocess.run(["mount", "--bind", str(mount), str(mounted)], check=True)
    try:
        point = vault.resolve_point("latest", source="mp")
        summary = restore_files(vault, point, RestoreOptions(target))
        assert summary.errors == [] and summary.files == 2
        assert (mounted / "inner.txt").read_bytes() == b"inner"
        assert (mounted.parent / "top.txt").read_bytes() == b"top"
    finally:
        subprocess.run(["umount", str(mounted)], check=True)
