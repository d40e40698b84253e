"""Guest filesystems as lists of entries with their metadata (dissect parsers underneath).

Every filesystem presents the same small interface (:class:`GuestFS`): its root, the entries
of a directory (:class:`FsEntry`: everything a files node needs), and a stream over a
file's content.  ``probe`` names the filesystem of a volume from its superblock magic.
"""

from __future__ import annotations

import os
import stat
import struct
import sys
from collections.abc import Iterable
from dataclasses import field
from typing import IO, Any, Final, Protocol

from strongroom.errors import GuestFilesError
from strongroom.guestfiles import acl
from strongroom.records import dataclass

__all__ = ["FsEntry", "GuestFS", "open_fs", "probe"]

Stream = IO[bytes]
# Reported for a filesystem strongroom cannot read: where to go instead.
NO_FILESYSTEM: Final = "no filesystem strongroom can read"
NBD_HINT: Final = "export the disk with `strongroom serve` and mount it with a tool that can"


@dataclass(slots=True)
class FsEntry:
    name: bytes
    kind: int  # stat.S_IFMT value
    mode: int = 0
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    atime_ns: int = 0
    ctime_ns: int = 0
    size: int = 0
    ino: int = 0
    nlink: int = 1
    rdev: int = 0
    target: bytes | None = None
    xattrs: tuple[tuple[str, bytes], ...] = ()
    extents: list[tuple[int, int]] | None = None  # data extents of a sparse file
    handle: Any = field(default=None, repr=False)


class GuestFS(Protocol):
    fstype: str
    label: str
    uuid: str

    def root(self) -> FsEntry: ...

    def children(self, entry: FsEntry) -> list[FsEntry]: ...

    def open(self, entry: FsEntry) -> Stream: ...


def probe(fh: Stream) -> str:
    """The filesystem type from its magic, or ''."""
    fh.seek(0)
    head = fh.read(0x10000 + 0x50)
    if len(head) >= 1082 and head[1080:1082] == b"\x53\xef":
        return "ext4" if struct.unpack_from("<I", head, 1024 + 0x60)[0] & 0x40 else "ext2/3"
    if head[:4] == b"XFSB":
        return "xfs"
    if head[3:11] == b"NTFS    ":
        return "ntfs"
    if head[3:11] == b"EXFAT   ":
        return "exfat"
    if len(head) > 0x10048 and head[0x10040:0x10048] == b"_BHRfS_M":
        return "btrfs"
    if head[510:512] == b"\x55\xaa" and (head[54:59] == b"FAT12" or head[54:59] == b"FAT16"):
        return head[54:59].decode().lower()
    if head[510:512] == b"\x55\xaa" and head[82:87] == b"FAT32":
        return "fat32"
    return ""


_DISSECT_ERRORS: Final = tuple(
    f"dissect.{name}.exceptions" for name in ("extfs", "xfs", "btrfs", "fat", "ntfs", "util")
)


def damage_errors() -> tuple[type[BaseException], ...]:
    """What the parsers raise on structures that do not hold together (a damaged or
    truncated filesystem): caught per directory and per file, reported with the path.
    Only the parsers already loaded can have raised (importing all of dissect costs 0.6 s)."""
    loaded = [sys.modules.get(name) for name in _DISSECT_ERRORS]
    dissect = tuple(m.Error for m in loaded if m is not None and hasattr(m, "Error"))
    return (
        GuestFilesError, EOFError, ValueError, KeyError, IndexError, struct.error,
        NotImplementedError, UnicodeError, OSError, *dissect,
    )  # fmt: skip


def open_fs(fh: Stream, where: str) -> GuestFS:
    kind = probe(fh)
    fh.seek(0)
    if not kind:
        raise GuestFilesError(f"{where}: {NO_FILESYSTEM}; {NBD_HINT}")
    try:
        return _open(fh, kind)
    except damage_errors() as exc:
        raise GuestFilesError(f"{where}: damaged {kind} filesystem ({exc}); {NBD_HINT}") from None


def _open(fh: Stream, kind: str) -> GuestFS:
    if kind in ("ext4", "ext2/3"):
        return ExtFs(fh, kind)
    if kind == "xfs":
        from strongroom.guestfiles.xfs import XfsFs

        return XfsFs(fh)
    if kind == "btrfs":
        from strongroom.guestfiles.btrfs import BtrfsFs

        return BtrfsFs(fh)
    if kind == "exfat":
        from strongroom.guestfiles.fat import ExfatFs

        return ExfatFs(fh)
    if kind == "ntfs":
        from strongroom.guestfiles.ntfs import NtfsFs

        return NtfsFs(fh)
    from strongroom.guestfiles.fat import FatFs

    return FatFs(fh, kind)


def _fs(text: str) -> bytes:
    return os.fsencode(text)


class ExtFs:
    """ext2/3/4 through dissect.extfs, with the parts it leaves raw: the high 16 bits of
    uid/gid, device numbers, POSIX ACLs in ext4's own encoding, sparse extents."""

    def __init__(self, fh: Stream, kind: str) -> None:
        from dissect.extfs import ExtFS

        try:
            self._fs = ExtFS(fh)
        except (EOFError, ValueError, KeyError) as exc:
            raise GuestFilesError(f"damaged {kind} filesystem: {exc}") from None
        sb = self._fs.sb
        self.fstype = kind
        self.label = bytes(sb.s_volume_name).rstrip(b"\0").decode(errors="replace")
        self.uuid = str(self._fs.uuid) if hasattr(self._fs, "uuid") else ""
        self.block_size = self._fs.block_size

    def root(self) -> FsEntry:
        return self._entry(b"", self._fs.get(2))

    def children(self, entry: FsEntry) -> list[FsEntry]:
        found = []
        for inode in entry.handle.iterdir():
            name = _fs(inode.filename)
            if name in (b".", b".."):
                continue
            found.append(self._entry(name, inode))
        return found

    def open(self, entry: FsEntry) -> Stream:
        stream: Stream = entry.handle.open()
        return stream

    def _entry(self, name: bytes, inode: Any) -> FsEntry:
        raw = inode.inode
        kind = stat.S_IFMT(raw.i_mode)
        e = FsEntry(
            name=name,
            kind=kind,
            mode=raw.i_mode & 0o7777,
            uid=raw.i_uid | (raw.i_uid_high << 16),
            gid=raw.i_gid | (raw.i_gid_high << 16),
            mtime_ns=inode.mtime_ns,
            atime_ns=inode.atime_ns,
            ctime_ns=inode.ctime_ns,
            ino=inode.inum,
            nlink=raw.i_links_count,
            handle=inode,
        )
        if kind == stat.S_IFREG:
            e.size = inode.size
            e.extents = self._extents(inode)
        elif kind == stat.S_IFLNK:
            e.target = _fs(inode.link)
            e.size = len(e.target)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            e.rdev = _ext_rdev(bytes(raw.i_block))
        e.xattrs = tuple(sorted(_ext_xattrs(inode.xattr)))
        return e

    def volume_runs(self, entry: FsEntry) -> list[tuple[int, int]] | None:
        """Where a file's data lies in the volume (None: inline, or not a file)."""
        inode = entry.handle
        if entry.kind != stat.S_IFREG or inode.inode.i_flags & 0x10000000:
            return None
        return byte_runs(inode.dataruns(), self.block_size)

    def _extents(self, inode: Any) -> list[tuple[int, int]] | None:
        """Byte extents of the data (None: no holes); inline data has none."""
        raw = inode.inode
        if inode.size == 0 or raw.i_flags & 0x10000000:  # EXT4_INLINE_DATA_FL
            return None
        # Allocated at least the size's blocks: no holes, and no need to parse the block
        # map for a listing (i_blocks counts 512-byte sectors unless EXT4_HUGE_FILE_FL).
        sectors = raw.i_blocks_lo | (raw.i_blocks_high << 32)
        unit = self.block_size if raw.i_flags & 0x40000 else 512
        if sectors * unit >= -(-inode.size // self.block_size) * self.block_size:
            return None
        from dissect.extfs.exceptions import Error as ExtError

        try:
            runs = inode.dataruns()
        except (EOFError, ValueError, ExtError):
            return None  # a damaged block map: listed, and reading the file reports it
        return runs_to_extents(runs, self.block_size, inode.size)


def byte_runs(
    runs: Iterable[tuple[int | None, int]], unit: int, base: int = 0
) -> list[tuple[int, int]]:
    """Block runs (start, count; None or 0 for a hole) -> byte ranges in the volume."""
    return [(base + start * unit, count * unit) for start, count in runs if start]


def runs_to_extents(
    runs: Iterable[tuple[int | None, int]], block: int, size: int
) -> list[tuple[int, int]] | None:
    extents: list[tuple[int, int]] = []
    pos = 0
    for start, count in runs:
        length = count * block
        if start is not None and start != 0 and pos < size:
            end = min(pos + length, size)
            if extents and extents[-1][0] + extents[-1][1] == pos:
                extents[-1] = (extents[-1][0], end - extents[-1][0])
            else:
                extents.append((pos, end - pos))
        pos += length
    if extents == [(0, size)]:
        return None
    return extents


def _ext_rdev(block: bytes) -> int:
    old, new = struct.unpack_from("<II", block)
    if old:
        return os.makedev((old >> 8) & 0xFF, old & 0xFF)
    return os.makedev((new & 0xFFF00) >> 8, (new & 0xFF) | ((new >> 12) & 0xFFF00))


def _ext_xattrs(xattrs: Iterable[Any]) -> Iterable[tuple[str, bytes]]:
    for x in xattrs:
        name = x.name
        if name == "system.data":  # inline data, not an xattr of the file
            continue
        value = bytes(x.value)
        if name in acl.POSIX_ACL_NAMES:
            value = acl.ext4_to_xattr(value)
        yield name, value
