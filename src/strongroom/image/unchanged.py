"""Skipping an unchanged offline image by its file's metadata, as the files cache does.

An offline backup records, in the disk tree, the image file's device, inode, size, mtime and
ctime (``file_state``).  The next backup of the same disk whose file shows the same five
values reuses the parent point's chunk map unread.  ctime cannot be set from user space, so
any write, ``utime`` or rename onto the path shows.  Any doubt means a read:

* only a self-contained regular file vouches for its content: no block device, no backing
  file, no qcow2 external data file, no vmdk with extent files beside it;
* a file modified in the last :data:`SETTLE_NS` is not recorded (a later write within the
  same timestamp tick would leave the five values equal);
* a file whose values changed while it was read is not recorded;
* the parent's record must be for the same source, format and chunk size, and every map
  piece it names must still be in the vault.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any, Final

from strongroom.image.formats import run_qemu_img
from strongroom.image.records import DiskRecord

__all__ = ["REUSED_MODE", "SETTLE_NS", "file_state", "reusable", "reused_record"]

SETTLE_NS: Final = 2_000_000_000
REUSED_MODE: Final = "unchanged-file-state"
"""``change_mode`` of a disk whose map was taken from the parent unread."""

_FIELDS: Final = ("dev", "ino", "size", "mtime_ns", "ctime_ns")
_SELF_CONTAINED: Final = frozenset({"raw", "qcow2", "vhdx", "vpc", "vdi", "vmdk"})
_SINGLE_FILE_VMDK: Final = frozenset({"monolithicSparse", "streamOptimized"})


def _stat_state(path: Path) -> dict[str, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    values = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return dict(zip(_FIELDS, values, strict=True))


def _self_contained(path: Path, fmt: str) -> bool:
    """Whether the image's content lies in ``path`` alone (qemu-img's own view of it)."""
    if fmt not in _SELF_CONTAINED:
        return False
    if fmt == "raw":
        return True
    proc = run_qemu_img(["info", "-U", "--output=json", "-f", fmt, str(path)])
    if proc.returncode != 0:
        return False
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        return False
    if not isinstance(doc, dict) or "backing-filename" in doc or "full-backing-filename" in doc:
        return False
    specific = doc.get("format-specific", {}).get("data", {})
    if fmt == "qcow2":
        return "data-file" not in specific
    if fmt == "vmdk":
        return specific.get("create-type") in _SINGLE_FILE_VMDK
    return True


def file_state(path: Path, fmt: str) -> dict[str, int] | None:
    """The values that vouch for ``path``'s content, or None when they cannot."""
    state = _stat_state(path)
    if state is None:
        return None
    settled = time.time_ns() - max(state["mtime_ns"], state["ctime_ns"]) >= SETTLE_NS
    if not settled or not _self_contained(path, fmt):
        return None
    return state if _stat_state(path) == state else None


def still(path: Path, state: dict[str, int] | None) -> dict[str, int] | None:
    """``state`` if the file still shows it after the read, else None (it changed)."""
    return state if state is not None and _stat_state(path) == state else None


def reusable(
    base: DiskRecord | None, state: dict[str, int] | None, path: Path, fmt: str, chunk_size: int
) -> bool:
    """Whether ``base`` (the parent point's record of this disk) describes the file as it
    is now: same recorded state, source, format and chunk size."""
    if base is None or state is None or base.file_state is None:
        return False
    return (
        base.file_state == state
        and base.source == str(path)
        and base.format == fmt
        and base.chunk_size == chunk_size
        and base.change_mode in ("full-read-hash", REUSED_MODE)
        and not base.tracking
    )


def reused_record(base: DiskRecord, target: tuple[str, str], started: float) -> DiskRecord:
    """The record of a disk taken unread from ``base``: its pieces, with zero reads."""
    data_chunks = int(base.stats.get("data_chunks", 0))
    stats: dict[str, Any] = {
        "chunks_read": 0,
        "zero_chunks_read": 0,
        "chunks_new": 0,
        "bytes_read": 0,
        "bytes_new": 0,
        "chunks_reused": data_chunks,
        "data_chunks": data_chunks,
        "data_bytes": int(base.stats.get("data_bytes", 0)),
        "duration": round(time.monotonic() - started, 3),
    }
    return DiskRecord(
        target=target[0],
        bus=target[1],
        source=base.source,
        format=base.format,
        virtual_size=base.virtual_size,
        chunk_size=base.chunk_size,
        chunks=base.chunks,
        read_mode=base.read_mode,
        change_mode=REUSED_MODE,
        stats=stats,
        file_mode=base.file_mode,
        file_state=base.file_state,
        pieces=list(base.pieces),
    )
