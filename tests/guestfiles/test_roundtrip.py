"""Files out of image points, against disks built with the real tools: volumes found,
files restored byte-identical with identical metadata (compared as the files engine's
round-trip tests compare), read amplification bounded."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from strongroom.files.restoretypes import RestoreOptions
from strongroom.guestfiles.restore import restore_guest_files
from strongroom.guestfiles.tree import GuestPoint, GuestTree
from strongroom.vault import Vault
from tests.conftest import PASSPHRASE
from tests.files._support import assert_same, snapshot

from ._disks import LUKS_PASSPHRASE, loop, mounted
from .conftest import Guest


@contextlib.contextmanager
def _open(g: Guest, name: str, luks: bytes | None = None) -> Iterator[GuestPoint]:
    from strongroom.storage import LocalBackend

    vault = Vault.open(LocalBackend(g.vault), PASSPHRASE)
    try:
        yield GuestPoint(vault, vault.resolve_point(g.points[name]), luks)
    finally:
        vault.close()


def _comparable(snap: dict[bytes, dict[str, Any]]) -> dict[bytes, dict[str, Any]]:
    """Drop what differs by the filesystem and not the file: allocated blocks, and
    ext4's lost+found."""
    out = {}
    for rel, rec in snap.items():
        if rel.startswith(b"lost+found"):
            continue
        out[rel] = {k: v for k, v in rec.items() if k != "blocks"}
    return out


def test_volumes_of_every_table(guest: Guest) -> None:
    with _open(guest, "gpt") as gp:
        vols = {v.name: v for v in gp.volumes("disk")}
        assert vols["p1"].kind == "ext4" and vols["p1"].label == "guestroot"
        assert vols["p2"].kind == "lvm2-pv"
        data = vols[f"lvm-{guest.vg}-data"]
        assert data.kind == "ext4" and data.info["segments"] == 2
        assert vols[f"lvm-{guest.vg}-stripe"].kind == "ext4"
    with _open(guest, "mbr") as mp:
        names = [v.name for v in mp.volumes("disk")]
        assert names[:4] == ["p1", "p5", "p6", "p7"]  # logicals numbered from 5, as Linux does
        locked = next(v for v in mp.volumes("disk") if v.name == "luks-p7")
        assert locked.error == "locked"
    with _open(guest, "whole") as wp:
        assert [(v.name, v.kind, v.label) for v in wp.volumes("disk")] == [
            ("whole", "ext2/3", "bare")
        ]


def test_restore_ext4_partition_identical(guest: Guest, tmp_path: Path) -> None:
    with _open(guest, "gpt") as gp:
        s = restore_guest_files(gp, RestoreOptions(tmp_path / "out", ["/disk/p1"], verify=True))
        assert not s.errors, s.errors
        stats = gp.stats
    # read-write (snapshot puts atimes back); the point was taken before
    with loop(guest.disks["gpt"]) as dev, mounted(dev.part(1), tmp_path / "src") as src:
        want = _comparable(snapshot(src, atime=False))
    got = _comparable(snapshot(tmp_path / "out" / "disk" / "p1", atime=False))
    assert_same(got, want)
    # every file of a 48 MiB partition (4 MiB of data, ext4's metadata spread over its block
    # groups) restored: each chunk is fetched once (the cache), no chunk per inode; measured
    # 15 fetches of 1 MiB for 72 reads, 3.96x the bytes used (docs/image-files.md); finding
    # the disk's volumes opens each filesystem (LVM, XFS, btrfs): 4 more fetches
    assert stats.chunk_fetches <= 20 and stats.cache_hits > 3 * stats.chunk_fetches, stats
    assert stats.amplification() < 5, stats.to_dict()


def test_lvm_two_segments_and_striped(guest: Guest, tmp_path: Path) -> None:
    work = guest.root / "work"
    with _open(guest, "gpt") as gp:
        for lv in ("data", "stripe"):
            s = restore_guest_files(
                gp, RestoreOptions(tmp_path / lv, [f"/disk/lvm-{guest.vg}-{lv}/inside.bin"])
            )
            assert not s.errors, s.errors
            with loop_mount(work / f"{lv}.img", tmp_path / f"m-{lv}") as m:
                want = (m / "inside.bin").read_bytes()
            got = tmp_path / lv / "disk" / f"lvm-{guest.vg}-{lv}" / "inside.bin"
            assert got.read_bytes() == want


@contextlib.contextmanager
def loop_mount(image: Path, where: Path) -> Iterator[Path]:
    from ._disks import loop_file

    with loop_file(image) as dev, mounted(dev, where, "mount", "-o", "ro") as m:
        yield m


def test_luks_with_passphrase(guest: Guest, tmp_path: Path) -> None:
    with _open(guest, "mbr", LUKS_PASSPHRASE.encode()) as mp:
        tree = GuestTree(mp)
        node = tree.lookup(tree.root(), "/disk/luks-p7/secret.txt")
        assert node is not None and node.size == len("encrypted at rest\n")
        s = restore_guest_files(mp, RestoreOptions(tmp_path, ["/disk/luks-p7/secret.txt"]))
        assert not s.errors
    assert (tmp_path / "disk/luks-p7/secret.txt").read_text() == "encrypted at rest\n"
