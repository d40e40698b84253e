"""FAT12/16/32 and exFAT through dissect.fat.

Neither keeps owners or permissions: entries get uid 0, gid 0, mode 0755 for folders and
0644 for files (0444 when the read-only attribute is set), what a restore as root would
make of them anyway; ``docs/image-files.md`` says so.  FAT times are local times without a
zone: they are taken as UTC (what Linux's vfat does without ``tz=``); exFAT's carry their
zone offset.
"""

from __future__ import annotations

import calendar
import stat
from typing import Any, Final

from strongroom.guestfiles.filesystems import FsEntry, Stream, byte_runs

DIR_MODE: Final = 0o755
FILE_MODE: Final = 0o644
READONLY_MODE: Final = 0o444
_NS: Final = 1_000_000_000


def _name(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def dos_ns(date: int, time: int, centis: int = 0, tz_minutes: int = 0) -> int:
    """A DOS date and time (2 s steps) plus hundredths -> ns since the epoch (0 if unset)."""
    if not date:
        return 0
    year, month, day = 1980 + (date >> 9), (date >> 5) & 0xF, date & 0x1F
    hour, minute, sec = time >> 11, (time >> 5) & 0x3F, (time & 0x1F) * 2
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return 0
    secs = calendar.timegm((year, month, day, hour, minute, sec, 0, 0, 0)) - tz_minutes * 60
    return secs * _NS + centis * 10_000_000


class FatFs:
    def __init__(self, fh: Stream, kind: str) -> None:
        from dissect.fat import FATFS

        self._fs = FATFS(fh)
        self.fstype = kind
        self.label = self._fs.volume_label
        self.uuid = (
            f"{self._fs.bpb_ext.BS_VolID >> 16:04X}-{self._fs.bpb_ext.BS_VolID & 0xFFFF:04X}"
        )

    def root(self) -> FsEntry:
        return FsEntry(name=b"", kind=stat.S_IFDIR, mode=DIR_MODE, handle=self._fs.root)

    def children(self, entry: FsEntry) -> list[FsEntry]:
        found = []
        for d in entry.handle.iterdir():
            if d.name in (".", "..") or d.is_volume_id():
                continue
            found.append(self._entry(d))
        return found

    def open(self, entry: FsEntry) -> Stream:
        stream: Stream = entry.handle.open()
        return stream

    def volume_runs(self, entry: FsEntry) -> list[tuple[int, int]] | None:
        if entry.kind != stat.S_IFREG:
            return None
        fs = self._fs
        return byte_runs(
            entry.handle.dataruns(), fs.cluster_size, fs.first_data_sector * fs.sector_size
        )

    def _entry(self, d: Any) -> FsEntry:
        de = d.dirent
        is_dir = d.is_directory()
        mode = DIR_MODE if is_dir else READONLY_MODE if d.is_readonly() else FILE_MODE
        return FsEntry(
            name=_name(_shown_name(d)),
            kind=stat.S_IFDIR if is_dir else stat.S_IFREG,
            mode=mode,
            mtime_ns=dos_ns(de.DIR_WrtDate, de.DIR_WrtTime),
            atime_ns=dos_ns(de.DIR_LstAccDate, 0),
            ctime_ns=dos_ns(de.DIR_CrtDate, de.DIR_CrtTime, de.DIR_CrtTimeTenth),
            size=0 if is_dir else de.DIR_FileSize,
            ino=d.cluster,
            handle=d,
        )


def _shown_name(d: Any) -> str:
    """The long name, else the 8.3 name with the case Windows NT records in DIR_NTRes (bit 3:
    lower-case base, bit 4: lower-case extension), as Linux shows it."""
    if d.ldirents:
        return str(d.name)
    base, _, ext = str(d.short_name).partition(".")
    flags = d.dirent.DIR_NTRes
    base = base.lower() if flags & 0x08 else base
    ext = ext.lower() if flags & 0x10 else ext
    return f"{base}.{ext}" if ext else base


def _tz(byte: int) -> int:
    """exFAT's zone byte -> minutes east of UTC (0 when the time is local without a zone)."""
    if not byte & 0x80:
        return 0
    quarter = byte & 0x7F
    return (quarter - 128 if quarter & 0x40 else quarter) * 15


class ExfatFs:
    fstype = "exfat"

    def __init__(self, fh: Stream) -> None:
        from dissect.fat import ExFAT

        self._fs = ExFAT(fh)  # parses every directory up front
        self._fh = fh
        self.label = self._fs.volume_label
        serial = self._fs.vbr.volume_serial
        self.uuid = f"{serial >> 16:04X}-{serial & 0xFFFF:04X}"

    def root(self) -> FsEntry:
        return FsEntry(name=b"", kind=stat.S_IFDIR, mode=DIR_MODE, handle=(None, self._root_dir()))

    def _root_dir(self) -> Any:
        """dissect keeps the root as an entry "/" holding the top-level entries."""
        files = self._fs.files
        return files["/"][1] if list(files) == ["/"] else files

    def children(self, entry: FsEntry) -> list[FsEntry]:
        _, kids = entry.handle
        return [self._entry(name, f, sub) for name, (f, sub) in (kids or {}).items()]

    def open(self, entry: FsEntry) -> Stream:
        from dissect.util.stream import RunlistStream

        f, _ = entry.handle
        s = f.stream
        if not s.data_length:
            import io

            return io.BytesIO()
        runs = self._fs.runlist(
            s.location,
            bool(s.flags.not_fragmented),
            s.data_length if s.flags.not_fragmented else None,
        )
        stream: Stream = RunlistStream(self._fh, runs, s.data_length, self._fs.sector_size)
        return stream

    def _entry(self, name: str, f: Any, sub: Any) -> FsEntry:
        m = f.metadata
        is_dir = bool(m.attributes.directory)
        mode = DIR_MODE if is_dir else READONLY_MODE if m.attributes.read_only else FILE_MODE
        size = 0 if is_dir else f.stream.data_length
        valid = f.stream.valid_data_length
        return FsEntry(
            name=_name(name),
            kind=stat.S_IFDIR if is_dir else stat.S_IFREG,
            mode=mode,
            mtime_ns=_exfat_ns(m.modified_time, m.modified_offset, m.modified_timezone),
            atime_ns=_exfat_ns(m.access_time, 0, m.access_timezone),
            ctime_ns=_exfat_ns(m.create_time, m.create_offset, m.create_timezone),
            size=size,
            ino=f.stream.location,
            # beyond the valid data length an exFAT file reads as zeros
            extents=[(0, valid)] if 0 < valid < size else None,
            handle=(f, sub),
        )


def _exfat_ns(stamp: int, centis: int, tz: int) -> int:
    return dos_ns(stamp >> 16, stamp & 0xFFFF, centis, _tz(tz))
