"""btrfs through dissect.btrfs, from the top-level subvolume (id 5) so that every subvolume
and snapshot appears as a folder where it is attached; xattrs (btrfs keeps POSIX ACLs in
the kernel's xattr form already), device numbers, holes and preallocated extents."""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterator
from typing import Any, Final

from strongroom.guestfiles.filesystems import FsEntry, Stream

_XATTR_ITEM: Final = 24  # BTRFS_XATTR_ITEM_KEY
_DIR_ITEM_HEAD: Final = 30  # btrfs_dir_item: location (17), transid, data_len, name_len, type


class BtrfsFs:
    fstype = "btrfs"

    def __init__(self, fh: Stream) -> None:
        from dissect.btrfs import Btrfs

        self._fs = Btrfs(fh)
        self.label = self._fs.label
        self.uuid = str(self._fs.uuid)

    def root(self) -> FsEntry:
        return self._entry(b"", self._fs.fs_tree.root)

    def children(self, entry: FsEntry) -> list[FsEntry]:
        return [
            self._entry(os.fsencode(name), inode)
            for name, inode in entry.handle.iterdir()
            if name not in (".", "..")
        ]

    def open(self, entry: FsEntry) -> Stream:
        stream: Stream = entry.handle.open()
        return stream

    def _entry(self, name: bytes, inode: Any) -> FsEntry:
        raw = inode.inode
        kind = stat.S_IFMT(raw.mode)
        e = FsEntry(
            name=name, kind=kind, mode=raw.mode & 0o7777, uid=raw.uid, gid=raw.gid,
            mtime_ns=inode.mtime_ns, atime_ns=inode.atime_ns, ctime_ns=inode.ctime_ns,
            # inode numbers repeat across subvolumes: hard links are per subvolume
            ino=(inode.subvolume.objectid << 64) | inode.inum, nlink=raw.nlink, handle=inode,
        )  # fmt: skip
        if kind == stat.S_IFREG:
            e.size = raw.size
            e.extents = _extents(inode, raw.size)
        elif kind == stat.S_IFLNK:
            e.target = os.fsencode(inode.link)
            e.size = len(e.target)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            e.rdev = os.makedev(raw.rdev >> 20, raw.rdev & 0xFFFFF)  # the kernel's dev_t
        e.xattrs = tuple(sorted(_xattrs(inode)))
        return e


def _extents(inode: Any, size: int) -> list[tuple[int, int]] | None:
    """Byte extents holding data (holes and preallocated ranges left out); None: no holes."""
    if not size:
        return None
    found = inode.extents()
    if found is None:  # inline data
        return None
    extents: list[tuple[int, int]] = []
    pos = 0
    for ext in found:
        if ext.disk_offset and pos < size:
            end = min(pos + ext.length, size)
            if extents and sum(extents[-1]) == pos:
                extents[-1] = (extents[-1][0], end - extents[-1][0])
            else:
                extents.append((pos, end - pos))
        pos += ext.length
    return None if extents == [(0, size)] else extents


def _xattrs(inode: Any) -> Iterator[tuple[str, bytes]]:
    cursor = inode.subvolume.tree.cursor()
    for _, data in cursor.iter(inode.inum, _XATTR_ITEM, 0, ignore_offset=True):
        pos = 0
        while pos + _DIR_ITEM_HEAD <= len(data):  # items whose names share a hash
            data_len, name_len = struct.unpack_from("<HH", data, pos + 25)
            name = bytes(data[pos + _DIR_ITEM_HEAD : pos + _DIR_ITEM_HEAD + name_len])
            start = pos + _DIR_ITEM_HEAD + name_len
            yield os.fsdecode(name), bytes(data[start : start + data_len])
            pos = start + data_len
