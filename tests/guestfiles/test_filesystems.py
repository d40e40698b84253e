"""Every filesystem strongroom reads, restored out of disk points and compared with what
the real tools see of the same filesystem: byte-identical files, and the metadata the
filesystem holds (all of it for XFS and btrfs; names, sizes, times and links for FAT,
exFAT and NTFS, whose owners and modes strongroom synthesises)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from strongroom.files.restoretypes import RestoreOptions
from strongroom.guestfiles.restore import restore_guest_files
from tests.files._support import assert_same, snapshot

from ._disks import loop, loop_file, mounted, sh
from .conftest import Guest
from .test_roundtrip import _comparable, _open


def _restore(g: Guest, disk: str, selector: str, out: Path) -> Path:
    with _open(g, disk) as gp:
        s = restore_guest_files(gp, RestoreOptions(out, [selector], verify=True))
    assert not s.errors, s.errors
    return out / selector.lstrip("/")


def plain(root: Path, dir_times: bool = True) -> dict[str, tuple[object, ...]]:
    """Kind, size, mtime and content digest (symlinks: target) of everything below."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath, name)
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_mtime_ns if dir_times else 0)
            else:
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                out[rel] = ("file", st.st_size, st.st_mtime_ns, digest, st.st_nlink)
    return out


def test_xfs_on_lvm(guest: Guest, tmp_path: Path) -> None:
    got = _restore(guest, "gpt", f"/disk/lvm-{guest.vg}-xfs", tmp_path / "out")
    with loop_file(guest.root / "work" / "xfs.img") as dev, mounted(dev, tmp_path / "m") as m:
        want = _comparable(snapshot(m, atime=False))
    for rec in want.values():  # XFS shows its ACLs to root twice: as POSIX ACLs and raw
        xattrs = rec.get("xattrs") or {}
        for name in [n for n in xattrs if n.startswith("trusted.SGI_ACL_")]:
            del xattrs[name]
    assert_same(_comparable(snapshot(got, atime=False)), want)


def test_btrfs_with_subvolume(guest: Guest, tmp_path: Path) -> None:
    got = _restore(guest, "gpt", "/disk/p4", tmp_path / "out")
    assert (got / "home" / "user.txt").read_text() == "in a subvolume\n"  # a folder
    with loop(guest.disks["gpt"]) as dev, mounted(dev.part(4), tmp_path / "m") as m:
        want = _comparable(snapshot(m, atime=False))
    assert_same(_comparable(snapshot(got, atime=False)), want)


def _mtools_copy(image: str, dest: Path) -> Path:
    dest.mkdir()
    names = [n for n in sh("mdir", "-b", "-i", image, "::/").splitlines() if n.strip()]
    sh("mcopy", "-s", "-m", "-n", "-i", image, *names, dest)
    return dest


def test_fat12_fat16_fat32(guest: Guest, tmp_path: Path) -> None:
    with loop(guest.disks["mbr"]) as dev:
        offset = dev.parts[1][0]
    cases = [("mbr", "/disk/p1", f"{guest.disks['mbr']}@@{offset}")]
    cases += [(n, "/disk/whole", str(guest.disks[n])) for n in ("fat12", "fat32")]
    for disk, selector, image in cases:
        got = _restore(guest, disk, selector, tmp_path / disk)
        want = _mtools_copy(image, tmp_path / f"{disk}-mtools")
        # mtools sets no folder times; files keep theirs (2 s steps, taken as UTC)
        assert plain(got, dir_times=False) == plain(want, dir_times=False), disk
    ro = tmp_path / "fat32" / "disk" / "whole" / "readonly.txt"
    assert stat.S_IMODE(ro.stat().st_mode) == 0o444
    assert (tmp_path / "fat12/disk/whole/lower.txt").exists()  # NT lower-case flag honoured


def test_exfat_and_ntfs(guest: Guest, tmp_path: Path) -> None:
    for part, fuse in ((5, "mount.exfat-fuse"), (6, "ntfs-3g")):
        got = _restore(guest, "mbr", f"/disk/p{part}", tmp_path / f"p{part}")
        with (
            loop(guest.disks["mbr"]) as dev,
            mounted(dev.part(part), tmp_path / f"m{part}", fuse, "-o", "ro") as m,
        ):
            want = plain(m)
        want = {k: v for k, v in want.items() if not k.startswith("System Volume")}
        assert plain(got) == want, part
    ntfs = tmp_path / "p6" / "disk" / "p6"
    assert os.readlink(ntfs / "link") == "docs/readme.txt"
    assert os.stat(ntfs / "hard").st_ino == os.stat(ntfs / "data.bin").st_ino
