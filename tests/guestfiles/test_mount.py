"""``strongroom mount`` of an image point: /DISK/VOLUME/PATH over real FUSE, compared with
the disk's own filesystem mounted through a loop device."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.files._support import assert_same, snapshot
from tests.fusemount import Mounts

from ._disks import loop, mounted
from .conftest import Guest


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    m = Mounts()
    yield m
    m.close()


def _comparable(snap: dict[bytes, dict[str, Any]]) -> dict[bytes, dict[str, Any]]:
    """Without allocation (blocks, extents: FUSE has no SEEK_DATA) and ext4's lost+found."""
    skip = {"blocks", "extents"}
    return {
        rel: {k: v for k, v in rec.items() if k not in skip}
        for rel, rec in snap.items()
        if not rel.startswith(b"lost+found")
    }


def test_mount_an_ext4_partition_of_a_disk_point(
    vault_env: Guest, tmp_path: Path, mounts: Mounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = vault_env
    where = tmp_path / "mnt"
    where.mkdir()
    mounts.start(g.points["gpt"], where)
    assert os.listdir(where) == ["disk"]
    with monkeypatch.context() as m:  # snapshot puts atimes back: not on a read-only mount
        m.setattr(os, "utime", lambda *a, **k: None)
        got = _comparable(snapshot(where / "disk" / "p1", atime=False))
    with loop(g.disks["gpt"]) as dev, mounted(dev.part(1), tmp_path / "src") as src:
        want = _comparable(snapshot(src, atime=False))
    assert_same(got, want)
    with open(where / "disk" / "p1" / "big.bin", "rb") as f:
        f.seek(1_000_001)
        assert len(f.read(70_000)) == 70_000


def test_a_locked_luks_volume_fails_its_listing_only(
    vault_env: Guest, tmp_path: Path, mounts: Mounts
) -> None:
    where = tmp_path / "mnt"
    where.mkdir()
    proc = mounts.start(vault_env.points["mbr"], where)
    with pytest.raises(OSError) as exc:
        os.listdir(where / "disk" / "luks-p7")
    assert exc.value.errno == errno.EIO
    assert os.listdir(where / "disk")  # the mount goes on
    proc.terminate()
    assert proc.wait(15) == 0
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert "--luks-passphrase-file" in err and "Traceback" not in err
