"""Build real guest disks with the real tools (as root): partition tables, LVM2, LUKS and
filesystems, filled with files that carry every kind of metadata.

Every builder cleans up after itself (mounts, loop devices, volume groups, LUKS mappings),
also when a step fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

MiB = 1 << 20
T_FILE = 1_600_000_000_123_456_789
T_DIR = 1_500_000_000_987_654_321
LUKS_PASSPHRASE = "guest secret"
TOOLS = (
    "sgdisk", "sfdisk", "mkfs.ext4", "mkfs.xfs", "mkfs.btrfs", "mkfs.vfat", "mkfs.exfat",
    "mkntfs", "pvcreate", "cryptsetup", "mcopy", "mount.exfat-fuse", "ntfs-3g", "losetup",
)  # fmt: skip


def sh(*args: str | Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
    return proc.stdout


class Loops:
    """Loop devices over an image's partitions (one per partition, by offset: containers
    have no udev to make the partition nodes of ``losetup -P``)."""

    def __init__(self, image: Path) -> None:
        self.image = image
        doc = json.loads(sh("sfdisk", "-J", image))["partitiontable"]
        self.parts: dict[int, tuple[int, int]] = {}
        for p in doc["partitions"]:
            number = int(re.sub(r"^.*?(\d+)$", r"\1", p["node"]))
            self.parts[number] = (p["start"] * 512, p["size"] * 512)
        self.devs: list[str] = []
        self.made: dict[int, str] = {}

    def part(self, number: int) -> str:
        if number in self.made:
            return self.made[number]
        offset, size = self.parts[number]
        dev = sh("losetup", "-f", "--show", "-o", str(offset), "--sizelimit", str(size),
                 self.image).strip()  # fmt: skip
        self.devs.append(dev)
        self.made[number] = dev
        return dev

    def close(self) -> None:
        for dev in reversed(self.devs):
            subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)


@contextlib.contextmanager
def loop(image: Path) -> Iterator[Loops]:
    loops = Loops(image)
    try:
        yield loops
    finally:
        loops.close()


@contextlib.contextmanager
def mounted(dev: str, where: Path, *cmd: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    sh(*(cmd or ("mount",)), dev, where)
    try:
        yield where
    finally:
        sh("sync")
        subprocess.run(["umount", where], check=False, capture_output=True)


def fill_posix(root: Path, extra: str = "") -> None:
    """Files with the metadata a POSIX filesystem keeps."""
    d = root / "etc"
    d.mkdir()
    (d / "hostname").write_text("guest\n" + extra)
    (root / "big.bin").write_bytes(secrets.token_bytes(3 * MiB + 123))
    owned = root / "owned"
    owned.write_bytes(b"owned by a 32-bit uid")
    os.chown(owned, 100_000, 200_000)
    os.chmod(owned, 0o640)
    setuid = root / "setuid"
    setuid.write_bytes(b"#!/bin/sh\n")
    os.chmod(setuid, 0o4755)
    x = root / "xattrs"
    x.write_bytes(b"x")
    os.setxattr(x, "user.text", b"value")
    os.setxattr(x, "user.binary", bytes(range(200)))
    sh("setfacl", "-m", "u:1234:r,g:5678:rw", x)
    acl = root / "acl-dir"
    acl.mkdir()
    sh("setfacl", "-d", "-m", "u:1234:rwx", acl)
    os.symlink("etc/hostname", root / "rel-link")
    os.symlink("/a/very/long/target/" + "x" * 80, root / "long-link")
    os.link(d / "hostname", root / "hard")
    os.mkfifo(root / "fifo", 0o640)
    os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "blk", 0o660 | stat.S_IFBLK, os.makedev(7, 200))
    with open(root / "sparse", "wb") as f:
        f.seek(1 * MiB)
        f.write(secrets.token_bytes(10_000))
        f.truncate(6 * MiB)
    for i in range(40):
        (d / f"conf{i:02d}").write_text(f"line {i}\n" * i)
    times(root)


def times(root: Path) -> None:
    """ns mtimes on everything, children before parents."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), ns=(T_FILE, T_FILE + 7), follow_symlinks=False)
        os.utime(dirpath, ns=(T_DIR, T_DIR + 3))


def fill_plain(root: Path) -> None:
    """Files for filesystems without POSIX owners (FAT, exFAT, NTFS)."""
    (root / "docs").mkdir()
    (root / "docs" / "readme.txt").write_bytes(b"plain text\r\n" * 100)
    (root / "data.bin").write_bytes(secrets.token_bytes(2 * MiB + 17))


def fat_image(path: Path, size: int) -> None:
    """A FAT16 filesystem filled with mtools (no mount needed)."""
    sh("mkfs.vfat", "-F", "16", "-n", "GUESTFAT", "-C", path, str(size // 1024))
    src = path.parent / "fat-src"
    src.mkdir()
    fill_plain(src)
    sh("mcopy", "-s", "-m", "-i", path, src / "docs", src / "data.bin", "::/")


LVM_NO_DM = "global { activation = 0 }"  # no device-mapper in containers: metadata only


def _lvm(*args: str) -> str:
    return sh(args[0], "--config", LVM_NO_DM, *args[1:], env={"LVM_SUPPRESS_FD_WARNINGS": "1"})


def _lvm_down(vg: str, pvs: list[str]) -> None:
    """Forget the VG on this host (its metadata stays on the PVs, in the image)."""
    env = {**os.environ, "LVM_SUPPRESS_FD_WARNINGS": "1"}
    subprocess.run(["vgchange", "--config", LVM_NO_DM, "-an", vg], capture_output=True,
                   check=False, env=env)  # fmt: skip
    for pv in pvs:
        subprocess.run(["pvscan", "--cache", pv], capture_output=True, check=False, env=env)


def _write_lv(vg: str, lv: str, image: Path, devs: dict[str, str]) -> None:
    """Place a filesystem image into an LV's extents as LVM maps them (there is no
    device-mapper to write through): linear and striped segments."""
    pe_start = {
        name: int(start.rstrip("B"))
        for name, start in (
            line.split() for line in _lvm("pvs", "--noheadings", "--units", "b", "-o",
                                          "pv_name,pe_start").splitlines() if line.strip()
        )
    }  # fmt: skip
    extent = int(_lvm("vgs", "--noheadings", "--units", "b", "-o", "vg_extent_size", vg)
                 .strip().rstrip("B"))  # fmt: skip
    rows = _lvm("lvs", "--noheadings", "--units", "b", "-o",
                "seg_start,stripe_size,seg_pe_ranges", f"{vg}/{lv}").splitlines()  # fmt: skip
    data = image.read_bytes()
    for row in rows:
        start, stripe, *ranges = row.split()
        seg_start, stripe_size = int(start.rstrip("B")), int(stripe.rstrip("B"))
        places = []
        for r in ranges:
            dev, pes = r.rsplit(":", 1)
            first, last = (int(x) for x in pes.split("-"))
            places.append((dev, pe_start[dev] + first * extent, (last - first + 1) * extent))
        if len(places) == 1:
            dev, at, size = places[0]
            _pwrite(dev, at, data[seg_start : seg_start + size])
            continue
        total = sum(size for _, _, size in places)
        for i in range(total // stripe_size):
            dev, at, _ = places[i % len(places)]
            off = seg_start + i * stripe_size
            _pwrite(dev, at + (i // len(places)) * stripe_size, data[off : off + stripe_size])


def _pwrite(dev: str, offset: int, data: bytes) -> None:
    fd = os.open(dev, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fs_image(path: Path, size: int, mkfs: tuple[str, ...], fill: str, work: Path) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    sh(*mkfs, path, env={"TEST_DIR": "1", "TEST_DEV": "1", "QA_CHECK_FS": "1"})
    with loop_file(path) as dev, mounted(dev, work / f"mnt-{path.name}") as m:
        if fill == "posix":
            fill_posix(m)
        else:
            (m / "inside.bin").write_bytes(secrets.token_bytes(11 * MiB))
            (m / "note").write_text(path.name)
            times(m)
    return path


@contextlib.contextmanager
def loop_file(path: Path) -> Iterator[str]:
    dev = sh("losetup", "-f", "--show", path).strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)


def build_gpt(path: Path, vg: str, work: Path) -> None:
    """GPT: p1 ext4 (every metadata kind); p2 + p3 LVM2 PVs of ``vg`` with a linear ext4 LV
    extended after creation (two segments), a striped ext4 LV and an XFS LV; p4 btrfs with
    a subvolume, filled like p1; p5 swap."""
    with open(path, "wb") as f:
        f.truncate(400 * MiB)
    sh("sgdisk", "-n1:1M:+48M", "-c1:root", "-n2:0:+100M", "-t2:8e00", "-n3:0:+100M",
       "-t3:8e00", "-n4:0:+130M", "-n5:0:+8M", "-t5:8200", path)  # fmt: skip
    data = _fs_image(work / "data.img", 16 * MiB, ("mkfs.ext4", "-q"), "one", work)
    stripe = _fs_image(work / "stripe.img", 16 * MiB, ("mkfs.ext4", "-q"), "one", work)
    xfs = _fs_image(work / "xfs.img", 64 * MiB, ("mkfs.xfs", "-q", "-L", "guestxfs"), "posix",
                    work)  # fmt: skip
    with loop(path) as dev:
        sh("mkfs.ext4", "-q", "-b", "4096", "-L", "guestroot", dev.part(1))
        with mounted(dev.part(1), work / "m1") as m:
            fill_posix(m)
        p2, p3 = dev.part(2), dev.part(3)
        try:
            _lvm("pvcreate", "-q", p2, p3)
            _lvm("vgcreate", "-q", "-s", "1M", vg, p2, p3)
            _lvm("lvcreate", "-q", "-an", "-Zn", "-L", "8M", "-n", "data", vg, p2)
            _lvm("lvcreate", "-q", "-an", "-Zn", "-L", "16M", "-i", "2", "-I", "64k", "-n",
                 "stripe", vg)  # fmt: skip
            _lvm("lvcreate", "-q", "-an", "-Zn", "-L", "64M", "-n", "xfs", vg, p3)
            _lvm("lvextend", "-q", "-L", "+8M", f"{vg}/data", p2)
            for lv, image in (("data", data), ("stripe", stripe), ("xfs", xfs)):
                _write_lv(vg, lv, image, {})
        finally:
            _lvm_down(vg, [p2, p3])
        sh("mkswap", dev.part(5))  # no filesystem: named as unreadable, left out of walks
        sh("mkfs.btrfs", "-q", "-L", "guestbtrfs", dev.part(4))
        with mounted(dev.part(4), work / "btrfs") as m:
            fill_posix(m)
            sh("btrfs", "subvolume", "create", m / "home")
            (m / "home" / "user.txt").write_text("in a subvolume\n")
            (m / "top.txt").write_text("top level\n")
            times(m)


def build_mbr(path: Path, work: Path) -> None:
    """MBR: p1 FAT16; an extended partition with logical p5 exFAT, p6 NTFS, p7 LUKS2 holding
    ext4."""
    with open(path, "wb") as f:
        f.truncate(200 * MiB)
    layout = "label: dos\n,40M,6\n,,5\n,40M,7\n,40M,7\n,,83\n"
    subprocess.run(["sfdisk", "-q", str(path)], input=layout, text=True, check=True,
                   capture_output=True)  # fmt: skip
    with loop(path) as dev:
        fat_image(work / "fat.img", 40 * MiB - 1024)
        sh("dd", f"if={work / 'fat.img'}", f"of={dev.part(1)}", "bs=1M", "conv=fsync")
        sh("mkfs.exfat", "-L", "GUESTEXFAT", dev.part(5))
        with mounted(dev.part(5), work / "exfat", "mount.exfat-fuse") as m:
            fill_plain(m)
        sh("mkntfs", "-Q", "-F", "-L", "guestntfs", dev.part(6))
        with mounted(dev.part(6), work / "ntfs", "ntfs-3g") as m:
            fill_plain(m)
            os.symlink("docs/readme.txt", m / "link")  # ntfs-3g writes an Interix symlink
            os.link(m / "data.bin", m / "hard")
            times(m)
        key = work / "luks.key"
        key.write_text(LUKS_PASSPHRASE)
        # No device-mapper to open it through: an ext4 image encrypted offline (cryptsetup
        # reencrypt --encrypt), then copied into the partition.
        inner = work / "luks.img"
        src = work / "luks-src"
        src.mkdir()
        (src / "secret.txt").write_text("encrypted at rest\n")
        times(src)
        with open(inner, "wb") as f:
            f.truncate(32 * MiB)
        sh("mkfs.ext4", "-q", "-L", "secret", "-d", src, inner, "24M")
        sh("cryptsetup", "reencrypt", "-q", "--encrypt", "--type", "luks2",
           "--reduce-device-size", "8M", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations",
           "1000", "--key-file", key, inner)  # fmt: skip
        sh("dd", f"if={inner}", f"of={dev.part(7)}", "bs=1M", "conv=fsync")


def build_fat(path: Path, bits: int, work: Path) -> None:
    """FAT12 or FAT32 on the bare disk, filled with mtools: long and short names, nested
    folders, a read-only file, times kept (``mcopy -m``)."""
    size = {12: 4 * MiB, 32: 40 * MiB}[bits]
    per_cluster = {12: "4", 32: "1"}[bits]  # FAT12: < 4085 clusters; FAT32: > 65524
    sh("mkfs.vfat", "-F", str(bits), "-s", per_cluster, "-n", f"FAT{bits}", "-C", path,
       str(size // 1024))  # fmt: skip
    src = work / f"fat{bits}-src"
    (src / "Long Folder Name" / "deeper").mkdir(parents=True)
    (src / "Long Folder Name" / "deeper" / "Mixed Case File.txt").write_text("deep\n" * 50)
    (src / "SHORT.TXT").write_text("an 8.3 name\n")
    (src / "lower.txt").write_text("lower-case 8.3 name\n")
    (src / "blob.bin").write_bytes(secrets.token_bytes(300_000))
    ro = src / "readonly.txt"
    ro.write_text("read-only\n")
    times(src)
    ro.chmod(0o444)
    sh("mcopy", "-s", "-m", "-i", path, *sorted(src.iterdir()), "::/")
    sh("mattrib", "-i", path, "+r", "::/readonly.txt")


def build_whole(path: Path, work: Path) -> None:
    """ext2 on the bare disk (no partition table), filled without mounting."""
    src = work / "whole-src"
    src.mkdir()
    (src / "hello.txt").write_text("no partition table\n")
    with open(path, "wb") as f:
        f.truncate(16 * MiB)
    sh("mkfs.ext2", "-q", "-L", "bare", "-d", src, path)


def build_damaged(path: Path, work: Path) -> None:
    """ext4 on the bare disk with one file's extent header overwritten: ``bad/x.bin``
    cannot be read, its neighbours can."""
    src = work / "damaged-src"
    (src / "good").mkdir(parents=True)
    (src / "bad").mkdir()
    (src / "good" / "a.txt").write_text("good\n")
    (src / "bad" / "x.bin").write_bytes(secrets.token_bytes(50_000))
    (src / "bad" / "y.txt").write_text("fine\n")
    with open(path, "wb") as f:
        f.truncate(16 * MiB)
    sh("mkfs.ext4", "-q", "-b", "4096", "-d", src, path)
    found = re.search(r"located at block (\d+), offset (0x[0-9a-f]+)",
                      sh("debugfs", "-R", "imap /bad/x.bin", path))  # fmt: skip
    assert found is not None
    block, offset = int(found[1]), int(found[2], 16)
    with open(path, "r+b") as f:
        f.seek(block * 4096 + offset + 0x28)  # i_block: the extent header
        f.write(b"\xde\xad" * 30)
