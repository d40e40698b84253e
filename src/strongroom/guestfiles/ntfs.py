"""NTFS through dissect.ntfs: names (the Win32 ones; DOS 8.3 aliases left out), the times of
$STANDARD_INFORMATION (100 ns steps), sizes, sparse runs, hard links, and symbolic links:
Windows symlink and junction reparse points, WSL symlinks, and ntfs-3g's Interix symlinks.

NTFS keeps no POSIX owner or mode a restore could use (its security descriptors hold SIDs):
uid 0, gid 0, 0755 for folders and 0644 for files, as for FAT.  Alternate data streams
are not restored (they have no place on a POSIX filesystem); the metadata files ``$MFT``,
``$Extend``... are left out.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Final

from strongroom.guestfiles.fat import DIR_MODE, FILE_MODE, READONLY_MODE
from strongroom.guestfiles.filesystems import FsEntry, Stream, byte_runs, runs_to_extents

_ROOT: Final = 5
_FIRST_USER_RECORD: Final = 24  # records below hold the filesystem's own metadata files
_READONLY, _SYSTEM = 0x1, 0x4
_COMPRESSED, _SPARSE_FLAG = 0x1, 0x8000
_INTERIX_LINK: Final = b"IntxLNK\x01"
_LX_SYMLINK: Final = 0xA000001D
_SYMLINK, _MOUNT_POINT = 0xA000000C, 0xA0000003


class NtfsFs:
    fstype = "ntfs"

    def __init__(self, fh: Stream) -> None:
        from dissect.ntfs import NTFS

        self._fs = NTFS(fh)
        self.label = self._fs.volume_name or ""
        self.uuid = f"{self._fs.serial or 0:016X}"
        self.cluster = self._fs.cluster_size

    def root(self) -> FsEntry:
        return FsEntry(name=b"", kind=stat.S_IFDIR, mode=DIR_MODE, handle=self._fs.mft.get(_ROOT))

    def children(self, entry: FsEntry) -> list[FsEntry]:
        found = []
        for ie in entry.handle.iterdir(ignore_dos=True):
            name = ie.attribute.file_name
            record = ie.dereference()
            if name == "." or (record.segment < _FIRST_USER_RECORD and name.startswith("$")):
                continue
            found.append(self._entry(name, record))
        return found

    def open(self, entry: FsEntry) -> Stream:
        stream: Stream = entry.handle.open()
        return stream

    def _entry(self, name: str, record: Any) -> FsEntry:
        from dissect.ntfs.c_ntfs import ATTRIBUTE_TYPE_CODE as T

        info = record.attributes[T.STANDARD_INFORMATION]
        attrs = int(getattr(info, "file_attributes", 0) or 0)
        e = FsEntry(
            name=name.encode("utf-8", "surrogateescape"),
            kind=stat.S_IFDIR if record.is_dir() else stat.S_IFREG,
            mode=DIR_MODE,
            mtime_ns=info.last_modification_time_ns,
            atime_ns=info.last_access_time_ns,
            ctime_ns=info.last_change_time_ns,
            ino=record.segment,
            nlink=max(1, len(record.filenames(ignore_dos=True))),
            handle=record,
        )
        target = _link_target(record, attrs)
        if target is not None:
            e.kind, e.mode, e.target, e.size, e.nlink = stat.S_IFLNK, 0o777, target, len(target), 1
        elif not record.is_dir():
            e.mode = READONLY_MODE if attrs & _READONLY else FILE_MODE
            e.size = record.size() if record.has_stream("") else 0
            e.extents = self._extents(record, e.size)
        return e

    def volume_runs(self, entry: FsEntry) -> list[tuple[int, int]] | None:
        record = entry.handle
        if entry.kind != stat.S_IFREG or not entry.size or record.resident:
            return None
        if entry.extents is None and self._compressed(record):
            return None
        return byte_runs(record.dataruns(), self.cluster)

    @staticmethod
    def _compressed(record: Any) -> bool:
        from dissect.ntfs.c_ntfs import ATTRIBUTE_TYPE_CODE as T

        return bool(record.attributes.find("", T.DATA)[0].header.flags & _COMPRESSED)

    def _extents(self, record: Any, size: int) -> list[tuple[int, int]] | None:
        if not size or record.resident:
            return None
        if self._compressed(record):  # compression units look like holes
            return None
        return runs_to_extents(record.dataruns(), self.cluster, size)


def _link_target(record: Any, attrs: int) -> bytes | None:
    """A symbolic link's target, or None for anything else."""
    from dissect.ntfs.c_ntfs import ATTRIBUTE_TYPE_CODE as T

    if record.is_reparse_point():
        rp = record.attributes[T.REPARSE_POINT]
        tag = int(rp.tag)
        if tag == _LX_SYMLINK:
            return bytes(rp.buffer[4:])
        if tag in (_SYMLINK, _MOUNT_POINT):
            name = rp.print_name or rp.substitute_name
            return os.fsencode(name.replace("\\", "/") if rp.relative else name)
        return None
    interix = attrs & _SYSTEM and not record.is_dir() and record.has_stream("")
    if interix and 8 < record.size() <= 8 + 2 * 4096:
        head: bytes = record.open().read(8 + 2 * 4096)
        if head.startswith(_INTERIX_LINK):
            text = head[8:].decode("utf-16-le", "surrogatepass")
            return text.encode("utf-8", "surrogateescape")
    return None
