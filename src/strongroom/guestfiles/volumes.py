"""Volumes of one guest disk: partitions (GPT, MBR with logical partitions numbered as Linux
does, from 5), LVM2 logical volumes, LUKS volumes, or a filesystem on the bare disk.

Names are those of the path scheme ``/DISK/VOLUME/PATH``: ``p1``, ``p5``, ``lvm-VG-LV``,
``luks-VOLUME`` (the opened LUKS volume inside VOLUME), ``whole``.  A volume that holds
more volumes (a PV, a LUKS container) is listed with the kind ``lvm2-pv`` or ``luks`` and
its insides as volumes of their own.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import field
from typing import IO, Any, Final

from strongroom.errors import GuestFilesError
from strongroom.records import dataclass

__all__ = ["Volume", "discover"]

SECTOR: Final = 512
_EXTENDED: Final = (0x05, 0x0F, 0x85)
_LVM_MAGIC: Final = b"LABELONE"
_LUKS_MAGIC: Final = b"LUKS\xba\xbe"

Stream = IO[bytes]


@dataclass
class Volume:
    name: str
    offset: int  # within its container (the disk for partitions)
    size: int
    open: Callable[[], Stream]
    kind: str = ""  # lvm2-pv, luks, or the filesystem type once probed
    label: str = ""
    uuid: str = ""
    error: str = ""  # why it cannot be read (locked, unknown filesystem)
    info: dict[str, Any] = field(default_factory=dict)


def _range(open_parent: Callable[[], Stream], offset: int, size: int) -> Callable[[], Stream]:
    def opener() -> Stream:
        from dissect.util.stream import RangeStream

        stream: Stream = RangeStream(open_parent(), offset, size)
        return stream

    return opener


def _entries(table: bytes) -> list[tuple[int, int, int]]:
    """(type, first sector, sectors) of the four entries of an MBR or EBR."""
    found = []
    for i in range(4):
        entry = table[446 + 16 * i : 462 + 16 * i]
        ptype = entry[4]
        first, count = struct.unpack_from("<II", entry, 8)
        found.append((ptype, first, count))
    return found


def mbr_partitions(fh: Stream) -> list[tuple[int, int, int, int]] | None:
    """(number, type, offset, size) of an MBR's partitions; None if it is not one (or is a
    GPT's protective MBR).  Logical partitions are numbered from 5 in chain order."""
    fh.seek(0)
    head = fh.read(SECTOR)
    if len(head) < SECTOR or head[510:512] != b"\x55\xaa":
        return None
    primaries = _entries(head)
    if any(t == 0xEE for t, _, _ in primaries) or not any(t for t, _, _ in primaries):
        return None
    parts = []
    for number, (ptype, first, count) in enumerate(primaries, 1):
        if ptype in _EXTENDED:
            parts.extend(_logicals(fh, first))
        elif ptype:
            parts.append((number, ptype, first * SECTOR, count * SECTOR))
    return parts


def _logicals(fh: Stream, ext_first: int) -> list[tuple[int, int, int, int]]:
    parts = []
    ebr, number = ext_first, 5
    seen: set[int] = set()
    while ebr and ebr not in seen and len(seen) < 128:
        seen.add(ebr)
        fh.seek(ebr * SECTOR)
        table = fh.read(SECTOR)
        if len(table) < SECTOR or table[510:512] != b"\x55\xaa":
            break
        (ptype, first, count), (ntype, nfirst, _), *_ = _entries(table)
        if ptype and count:
            parts.append((number, ptype, (ebr + first) * SECTOR, count * SECTOR))
            number += 1
        ebr = ext_first + nfirst if ntype in _EXTENDED and nfirst else 0
    return parts


def gpt_partitions(fh: Stream) -> list[tuple[int, int, int, int]] | None:
    """(number, 0, offset, size) of a GPT's partitions (by entry position), None if none."""
    fh.seek(SECTOR)
    hdr = fh.read(92)
    if hdr[:8] != b"EFI PART":
        return None
    entries_lba, count, entry_size = struct.unpack_from("<QII", hdr, 72)
    fh.seek(entries_lba * SECTOR)
    table = fh.read(count * entry_size)
    parts = []
    for i in range(count):
        e = table[i * entry_size : (i + 1) * entry_size]
        if len(e) < 56 or e[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        parts.append((i + 1, 0, first * SECTOR, (last - first + 1) * SECTOR))
    return parts


def _magic(open_: Callable[[], Stream]) -> bytes:
    fh = open_()
    fh.seek(0)
    return fh.read(1024)


def discover(
    open_disk: Callable[[], Stream],
    size: int,
    luks_passphrase: bytes | None = None,
) -> list[Volume]:
    """Every volume of a disk, containers expanded (PVs into LVs, LUKS into its inside)."""
    fh = open_disk()
    table = gpt_partitions(fh)
    if table is None:
        table = mbr_partitions(fh)
    if table is None:
        top = [Volume("whole", 0, size, open_disk)]
    else:
        top = [
            Volume(f"p{n}", off, length, _range(open_disk, off, length))
            for n, _, off, length in table
        ]
    found: list[Volume] = []
    pvs: list[Volume] = []
    for vol in top:
        found.append(vol)
        head = _magic(vol.open)
        if head[512:520] == _LVM_MAGIC:
            vol.kind = "lvm2-pv"
            pvs.append(vol)
        elif head[:6] == _LUKS_MAGIC:
            found.extend(_luks(vol, luks_passphrase))
    if pvs:
        found.extend(_lvm(pvs))
    return found


def _lvm(pvs: list[Volume]) -> list[Volume]:
    """The logical volumes of the PVs (grouped by VG; a VG missing a PV is reported)."""
    from dissect.volume.lvm import LVM2
    from dissect.volume.lvm.physical import LVM2Device

    groups: dict[str, list[Any]] = {}
    for pv in pvs:
        try:
            dev = LVM2Device(pv.open())
        except (ValueError, KeyError, EOFError) as exc:
            pv.error = f"unreadable LVM2 label: {exc}"
            continue
        vg_name = next(k for k, v in dev.metadata.items() if isinstance(v, dict))
        pv.info["vg"] = vg_name
        groups.setdefault(vg_name, []).append(dev)
    found = []
    for vg_name, devs in groups.items():
        try:
            vg = LVM2(devs).vg
        except (ValueError, KeyError) as exc:
            raise GuestFilesError(f"LVM2 volume group {vg_name}: {exc}") from None
        for lv in vg.lv:
            if not lv.is_visible:
                continue
            vol = Volume(f"lvm-{vg_name}-{lv.name}", 0, 0, _lv_opener(lv))
            vol.size = sum(s.extent_count for s in lv.segments) * vg.extent_size * SECTOR
            vol.info = {"segments": len(lv.segments), "type": lv.type or ""}
            found.append(vol)
    return found


def _lv_opener(lv: Any) -> Callable[[], Stream]:
    def opener() -> Stream:
        stream: Stream = _LVStream(lv)  # type: ignore[assignment]
        return stream

    return opener


def _luks(container: Volume, passphrase: bytes | None) -> list[Volume]:
    from dissect.fve.luks import LUKS

    container.kind = "luks"
    name = f"luks-{container.name}"
    luks = LUKS(container.open())
    container.uuid = str(getattr(luks, "uuid", "") or "")
    if passphrase is None:
        return [Volume(name, 0, 0, container.open, kind="luks", error="locked")]
    try:
        luks.unlock_with_passphrase(passphrase)
    except ValueError:
        raise GuestFilesError(
            f"{container.name}: the LUKS passphrase does not open this volume"
        ) from None

    def opener() -> Stream:
        stream: Stream = luks.open()
        stream.seek(0)
        return stream

    inner = opener()
    size = int(getattr(inner, "size", 0) or 0)
    return [Volume(name, 0, size, opener)]


class _LVStream(io.RawIOBase):
    """A logical volume's bytes from its segments: linear and striped (dissect's striped
    segment concatenates the stripes instead of interleaving them, so the mapping is here)."""

    def __init__(self, lv: Any) -> None:
        super().__init__()
        vg = lv.vg
        extent = vg.extent_size * SECTOR
        self._segs: list[tuple[int, int, int, list[tuple[Stream, int]]]] = []
        for seg in lv.segments:
            stripes = getattr(seg, "stripes", None)
            if not stripes:
                raise GuestFilesError(f"LVM2 volume {lv.name}: {seg.type} segments unsupported")
            devs = [(vg.physical_volumes[pv].dev.open(), off * extent) for pv, off in stripes]
            size = (seg.stripe_size or 0) * SECTOR if len(devs) > 1 else seg.extent_count * extent
            self._segs.append((seg.start_extent * extent, seg.extent_count * extent, size, devs))
        self.size = sum(length for _, length, _, _ in self._segs)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int | None = -1, /) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
        parts = []
        while self._pos < end:
            piece = self._piece(self._pos, end - self._pos)
            if not piece:
                break
            parts.append(piece)
            self._pos += len(piece)
        return b"".join(parts)

    def readinto(self, buffer: Any, /) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def _piece(self, pos: int, want: int) -> bytes:
        for start, length, stripe, devs in self._segs:
            if start <= pos < start + length:
                off = pos - start
                if len(devs) == 1:
                    fh, base = devs[0]
                    n = min(want, length - off)
                    fh.seek(base + off)
                    return bytes(fh.read(n))
                number, within = divmod(off, stripe)
                fh, base = devs[number % len(devs)]
                fh.seek(base + (number // len(devs)) * stripe + within)
                return bytes(fh.read(min(want, stripe - within)))
        return b""
