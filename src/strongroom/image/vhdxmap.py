"""Which blocks of a VHDX image hold data, from its block allocation table (BAT).

qemu's vhdx driver implements no block status: ``qemu-img map`` and qemu-nbd's
``base:allocation`` report the whole virtual size as data, so a backup read every byte of a
sparse vhdx.  This reads the BAT itself (MS-VHDX 1.0: headers at 64 and 128 KiB, region
tables at 192 and 256 KiB, the metadata region's file parameters, logical sector size and
virtual size) and lists the payload blocks that are present.  Anything unexpected (no
signature, region tables that differ, a log to replay, a differencing image, a size that
disagrees with qemu's, a BAT past the end of the file) returns None: the caller then reads
the whole disk, as before.  A block qemu reads as zeros without data (not present, zero) is
skipped; every other state is read.
"""

from __future__ import annotations

import os
import struct
import uuid
from pathlib import Path
from typing import Final

from strongroom.errors import ImageError

__all__ = ["vhdx_data_extents"]

_KiB: Final = 1024
_MiB: Final = 1 << 20
_HEADERS: Final = (64 * _KiB, 128 * _KiB)
_REGIONS: Final = (192 * _KiB, 256 * _KiB)
_BAT: Final = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08").bytes_le
_METADATA: Final = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E").bytes_le
_FILE_PARAMETERS: Final = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B").bytes_le
_VIRTUAL_SIZE: Final = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8").bytes_le
_SECTOR_SIZE: Final = uuid.UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F").bytes_le
_NO_DATA: Final = frozenset({0, 2})  # PAYLOAD_BLOCK_NOT_PRESENT, PAYLOAD_BLOCK_ZERO
_MAX_REGIONS: Final = 2047
_MAX_BAT: Final = 1 << 30


class _Doubt(ImageError):
    """The file is not as this reader expects: read the whole disk instead."""


def _read(fd: int, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise _Doubt
    return data


def _regions(fd: int) -> dict[bytes, tuple[int, int]]:
    tables = [_read(fd, at, 64 * _KiB) for at in _REGIONS]
    if tables[0] != tables[1] or tables[0][:4] != b"regi":
        raise _Doubt
    (count,) = struct.unpack_from("<I", tables[0], 8)
    if count > _MAX_REGIONS:
        raise _Doubt
    found = {}
    for i in range(count):
        guid, offset, length, _ = struct.unpack_from("<16sQII", tables[0], 16 + 32 * i)
        found[guid] = (offset, length)
    return found


def _log_is_empty(fd: int) -> bool:
    """Both headers name no log (a log to replay means the BAT may be stale)."""
    for at in _HEADERS:
        head = _read(fd, at, 64)
        if head[:4] != b"head":
            return False
        log_guid = head[48:64]
        if log_guid != bytes(16):
            return False
    return True


def _metadata(fd: int, offset: int, length: int) -> tuple[int, int, int]:
    """(block size, logical sector size, virtual size) of a non-differencing image."""
    region = _read(fd, offset, min(length, 64 * _KiB + 1 * _MiB))
    if region[:8] != b"metadata":
        raise _Doubt
    (count,) = struct.unpack_from("<H", region, 10)
    items = {}
    for i in range(min(count, _MAX_REGIONS)):
        guid, where, size, _, _ = struct.unpack_from("<16sIIII", region, 32 + 32 * i)
        items[guid] = region[where : where + size]
    try:
        block_size, flags = struct.unpack_from("<II", items[_FILE_PARAMETERS])
        (sector,) = struct.unpack_from("<I", items[_SECTOR_SIZE])
        (virtual,) = struct.unpack_from("<Q", items[_VIRTUAL_SIZE])
    except (KeyError, struct.error):
        raise _Doubt from None
    if flags & 2 or block_size < _MiB or block_size & (block_size - 1) or sector not in (512, 4096):
        raise _Doubt  # a differencing image, or not a valid block size
    return block_size, sector, virtual


def _extents(fd: int, virtual_size: int) -> list[tuple[int, int]]:
    if not _log_is_empty(fd):
        raise _Doubt
    regions = _regions(fd)
    if _BAT not in regions or _METADATA not in regions:
        raise _Doubt
    block, sector, virtual = _metadata(fd, *regions[_METADATA])
    if virtual != virtual_size:
        raise _Doubt
    ratio = (1 << 23) * sector // block  # payload blocks per sector bitmap block
    blocks = -(-virtual // block)
    entries = blocks + (blocks - 1) // ratio
    bat_offset, bat_length = regions[_BAT]
    if entries * 8 > min(bat_length, _MAX_BAT):
        raise _Doubt
    bat = _read(fd, bat_offset, entries * 8)
    out: list[tuple[int, int]] = []
    for i in range(blocks):
        (entry,) = struct.unpack_from("<Q", bat, 8 * (i + i // ratio))
        if entry & 7 in _NO_DATA:
            continue
        start, length = i * block, min(block, virtual - i * block)
        if out and out[-1][0] + out[-1][1] == start:
            out[-1] = (out[-1][0], out[-1][1] + length)
        else:
            out.append((start, length))
    return out


def vhdx_data_extents(path: Path, virtual_size: int) -> list[tuple[int, int]] | None:
    """(offset, length) of the guest ranges whose blocks hold data, or None when in doubt."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if _read(fd, 0, 8) != b"vhdxfile":
            return None
        return _extents(fd, virtual_size)
    except (_Doubt, OSError, struct.error):
        return None
    finally:
        os.close(fd)
