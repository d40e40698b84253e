"""bench/restorefs.py: restores on a fresh journaled ext4 on a loop device, cleaned up after."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from bench.restorefs import RestoreFs


def _mount_of(path: Path) -> tuple[str, str, str]:
    """(device, file system type, options) of the mount holding ``path``."""
    out = subprocess.run(
        ["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return out[0], out[1], out[2]


@pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root")
def test_restores_go_to_a_journaled_ext4_that_is_gone_afterwards(tmp_path: Path) -> None:
    with RestoreFs(tmp_path, "loop") as fs:
        assert fs.journaled, fs.describe
        device, fstype, options = _mount_of(fs.root)
        assert device.startswith("/dev/loop") and fstype == "ext4"
        assert "discard" in options.split(",")
        features = subprocess.run(
            ["dumpe2fs", "-h", device], check=True, capture_output=True, text=True
        ).stdout
        assert "has_journal" in features
        (fs.root / "restored").write_bytes(b"x" * 4096)
        loop = subprocess.run(
            ["losetup", "-n", "-O", "DIO", device], check=True, capture_output=True, text=True
        )
        assert loop.stdout.strip() == "1"  # direct I/O: no second page cache
    assert not os.path.ismount(tmp_path / "restore-fs")
    assert not (tmp_path / "restore-fs.img").exists()
    leftover = subprocess.run(
        ["losetup", "-j", str(tmp_path / "restore-fs.img")],
        check=False,
        capture_output=True,
        text=True,
    )
    assert leftover.stdout == ""


def test_workdir_mode_restores_into_the_workdir(tmp_path: Path) -> None:
    with RestoreFs(tmp_path, "workdir") as fs:
        assert fs.root == tmp_path / "restore" and not fs.journaled
        assert "workdir" in fs.describe
    assert list(tmp_path.iterdir()) == []
