"""Image-level backup: every disk of a VM (from its domain XML) or a single disk image.

Per disk: the data extents (block status or SEEK_DATA) give the chunks to read; the scanner
reads them with several requests in flight; all-zero chunks are recorded as zero and never
stored; the rest are hashed and ``put`` (the vault deduplicates, so an unchanged chunk costs a
read and a hash).  No change tracking is used offline: every allocated chunk is read and
hashed ("full-read-hash") and the parent point is recorded, except that an image file whose
metadata is the parent's takes the parent's map unread (``unchanged.py``).  Then the chunk
map pieces, the disk trees and the VM tree are written, the writer flushed (packs, then
index) and the point saved: the commit.
"""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, field
from pathlib import Path
from typing import Any, Final

from strongroom import failpoints
from strongroom.chunking import is_zero
from strongroom.errors import ImageError, StrongroomError
from strongroom.image.chunkmap import ChunkMap, store_map
from strongroom.image.disks import Disk, open_disk
from strongroom.image.domain import DomainInfo, parse_domain
from strongroom.image.formats import check_read_format, image_info, image_lock_error
from strongroom.image.integrity import check_image
from strongroom.image.records import DiskRecord, VMRecord, load_point, store_disk, store_vm
from strongroom.image.scan import (
    DEFAULT_DEPTH,
    DEFAULT_SPAN,
    DEFAULT_WORKERS,
    chunk_indexes,
    scan,
)
from strongroom.image.unchanged import file_state, reusable, reused_record, still
from strongroom.image.vaultview import ImageBackupVault
from strongroom.records import dataclass
from strongroom.vault import ChunkWriter, PointManifest, RecoveryPoint

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "BackupOptions",
    "BackupSummary",
    "ReadPlan",
    "backup_disk",
    "backup_vm",
    "commit_point",
    "ensure_readable",
    "latest_point",
    "read_disk",
    "summarize",
]

DEFAULT_CHUNK_SIZE: Final = 1 << 20
# (label, bytes done, bytes to read in total)
Progress = Callable[[str, int, int], None]


@dataclass
class BackupOptions:
    chunk_size: int = DEFAULT_CHUNK_SIZE
    tags: Sequence[str] = ()
    workers: int = DEFAULT_WORKERS
    direct_raw: bool = True
    force_read: bool = False
    """Read every disk even when its file's metadata says it is unchanged."""
    read_span: int = DEFAULT_SPAN
    """Largest NBD READ (adjacent chunks are read together up to this many bytes)."""
    read_depth: int = DEFAULT_DEPTH
    """NBD READs kept in flight (0: one chunk per worker thread)."""

    def __post_init__(self) -> None:
        size = self.chunk_size
        if size < 64 * 1024 or size > 16 << 20 or size & (size - 1):
            raise ImageError("chunk size must be a power of two from 64 KiB to 16 MiB")


@dataclass
class BackupSummary:
    point_id: str = ""
    kind: str = ""
    source: str = ""
    parent: str | None = None
    logical_bytes: int = 0
    data_bytes: int = 0
    bytes_read: int = 0
    bytes_new: int = 0
    bytes_stored: int = 0
    chunks_new: int = 0
    duration: float = 0.0
    consistency: str = "offline"
    disks: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document; the new point's id is ``point``, as for file backups."""
        doc = asdict(self)
        doc["point"] = doc.pop("point_id")
        return doc

    def counts(self) -> dict[str, Any]:
        """What the recovery point's summary keeps."""
        return {k: v for k, v in asdict(self).items() if k not in ("point_id", "kind")}


class _DiskRun:
    """One disk's scan: fills the chunk map (a copy of the base map, if any) and counts."""

    def __init__(self, writer: ChunkWriter, count: int, base: ChunkMap | None) -> None:
        self.writer = writer
        self.cmap = base.copy() if base is not None else ChunkMap(count)
        self.lock = threading.Lock()
        self.stats = {"chunks_read": 0, "zero_chunks_read": 0, "chunks_new": 0}
        self.stats |= {"bytes_read": 0, "bytes_new": 0}

    def handle(self, index: int, view: memoryview) -> None:
        failpoints.hit("image-backup-chunk")
        n = len(view)
        if is_zero(view):
            self.cmap.set(index, None)
            with self.lock:
                self.stats["chunks_read"] += 1
                self.stats["zero_chunks_read"] += 1
                self.stats["bytes_read"] += n
            return
        result = self.writer.put(view)
        self.cmap.set(index, result.chunk_id)
        with self.lock:
            s = self.stats
            s["chunks_read"] += 1
            s["bytes_read"] += n
            if result.new:
                s["chunks_new"] += 1
                s["bytes_new"] += n


@dataclass
class ReadPlan:
    """Which chunks of a disk to read; every other chunk keeps the base map's id (a chunk
    outside ``indexes`` with no base is zero: a hole the disk reported)."""

    indexes: list[int]
    base: ChunkMap | None = None


def read_disk(
    writer: ChunkWriter,
    disk: Disk,
    plan: ReadPlan,
    chunk_size: int,
    label: str,
    opts: BackupOptions,
    progress: Progress | None = None,
) -> tuple[ChunkMap, dict[str, Any]]:
    """Read the plan's chunks of ``disk`` into the vault; the disk's new map and statistics."""
    started = time.monotonic()
    count = -(-disk.size // chunk_size)
    if plan.base is not None and plan.base.count != count:
        raise ImageError(f"{label}: the base chunk map has {plan.base.count} chunks, not {count}")
    run = _DiskRun(writer, count, plan.base)
    total = sum(min(chunk_size, disk.size - i * chunk_size) for i in plan.indexes)
    done = [0]

    def step(n: int) -> None:
        with run.lock:
            done[0] += n
            value = done[0]
        if progress is not None:
            progress(label, value, total)

    scan(
        disk,
        chunk_size,
        plan.indexes,
        run.handle,
        workers=opts.workers,
        progress=step,
        span=opts.read_span,
        depth=opts.read_depth,
    )
    data = [i for i, _ in run.cmap.data()]
    stats: dict[str, Any] = dict(run.stats)
    stats["chunks_reused"] = len(data) - (stats["chunks_read"] - stats["zero_chunks_read"])
    stats["data_chunks"] = len(data)
    stats["data_bytes"] = sum(min(chunk_size, disk.size - i * chunk_size) for i in data)
    stats["duration"] = round(time.monotonic() - started, 3)
    return run.cmap, stats


def _check_path(path: Path, where: str) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ImageError(f"{where}disk image not found: {path}") from None
    except OSError as exc:
        raise ImageError(f"{where}cannot read disk image {path}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise ImageError(f"{where}{path} is a folder, not a disk image")
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):  # a FIFO would hang qemu-img
        raise ImageError(f"{where}{path} is neither a regular file nor a block device")


def ensure_readable(path: Path, fmt: str, where: str) -> None:
    """A disk an offline backup can read: a file, not in use, and not damaged."""
    check_read_format(fmt)
    _check_path(path, where)
    try:
        held = image_lock_error(path, fmt)
        if held is not None:
            raise ImageError(
                f"disk image {path} is in use ({held}): shut the VM down for an offline backup"
            )
        check_image(path, fmt)
    except ImageError as exc:
        raise ImageError(f"{where}{exc}") from None


def _file_mode(path: Path) -> int | None:
    """An image file's permission bits (a block device's are the host's business)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None


def _backup_one(
    vault: ImageBackupVault,
    writer: ChunkWriter,
    path: Path,
    fmt: str,
    target: tuple[str, str],
    opts: BackupOptions,
    progress: Progress | None,
    base: DiskRecord | None = None,
) -> DiskRecord:
    cs = opts.chunk_size
    started = time.monotonic()
    state = file_state(path, fmt)
    if (
        not opts.force_read
        and reusable(base, state, path, fmt, cs)
        and base is not None
        and not vault.missing_chunks(base.pieces)
    ):
        record = reused_record(base, target, started)
        store_disk(vault, writer, record)
        return record
    disk = open_disk(path, fmt, direct_raw=opts.direct_raw)
    try:
        plan = ReadPlan(list(chunk_indexes(disk.data_extents(), cs)))
        cmap, stats = read_disk(writer, disk, plan, cs, target[0] or path.name, opts, progress)
        size, read_mode = disk.size, disk.read_mode
    finally:
        disk.close()
    record = DiskRecord(
        target=target[0],
        bus=target[1],
        source=str(path),
        format=fmt,
        virtual_size=size,
        chunk_size=cs,
        chunks=cmap.count,
        read_mode=read_mode,
        stats=stats,
        file_mode=_file_mode(path),
        file_state=still(path, state),
    )
    record.pieces = store_map(vault, writer, cmap)
    store_disk(vault, writer, record)
    return record


def latest_point(vault: ImageBackupVault, kind: str, source: str) -> str | None:
    found = _latest(vault, kind, source)
    return found.point_id if found is not None else None


def _latest(vault: ImageBackupVault, kind: str, source: str) -> RecoveryPoint | None:
    earlier = [p for p in vault.points() if p.manifest.kind == kind and p.manifest.source == source]
    return earlier[-1] if earlier else None


def _parent_disks(
    vault: ImageBackupVault, parent: RecoveryPoint | None, opts: BackupOptions
) -> list[DiskRecord]:
    """The parent point's disk records (their maps may be reused); none when forced."""
    if parent is None or opts.force_read:
        return []
    try:
        return load_point(vault, parent).disks
    except StrongroomError:  # an unreadable parent: every disk is read, as before
        return []


def _base_for(parents: list[DiskRecord], target: str, path: Path) -> DiskRecord | None:
    return next((d for d in parents if d.target == target and d.source == str(path)), None)


def summarize(summary: BackupSummary, records: Sequence[DiskRecord], writer: ChunkWriter) -> None:
    for r in records:
        summary.logical_bytes += r.virtual_size
        summary.data_bytes += r.stats["data_bytes"]
        summary.bytes_read += r.stats["bytes_read"]
        summary.disks.append(r.summary() | {"stats": r.stats})
    summary.bytes_new = writer.stats.raw_new
    summary.bytes_stored = writer.stats.stored_new
    summary.chunks_new = writer.stats.chunks_new


def commit_point(
    vault: ImageBackupVault,
    writer: ChunkWriter,
    summary: BackupSummary,
    root: bytes,
    meta: dict[str, Any],
    opts: BackupOptions,
    started: float,
) -> None:
    writer.flush()
    summary.duration = round(time.monotonic() - started, 3)
    manifest = PointManifest(
        kind=summary.kind,
        source=summary.source,
        roots=[root.hex()],
        parent=summary.parent,
        consistency=summary.consistency,
        tags=list(opts.tags),
        summary=summary.counts(),
        meta=meta,
    )
    summary.point_id = vault.save_point(manifest).point_id


def read_domain(xml_path: Path) -> tuple[bytes, DomainInfo]:
    try:
        xml = xml_path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"domain XML not found: {xml_path}") from None
    except OSError as exc:
        raise ImageError(f"cannot read domain XML {xml_path}: {exc.strerror}") from None
    info = parse_domain(xml, str(xml_path), base=xml_path.parent.absolute())
    if not info.disks:
        skipped = "; ".join(f"{s.target}: {s.reason}" for s in info.skipped)
        raise ImageError(
            f"{xml_path}: the domain names no disk to back up"
            + (f" ({skipped})" if skipped else "")
        )
    for d in info.disks:
        ensure_readable(d.source, d.format, f"{xml_path}: disk {d.target}: ")
    return xml, info


def backup_vm(
    vault: ImageBackupVault, xml_path: Path, opts: BackupOptions, progress: Progress | None = None
) -> BackupSummary:
    """Back up every disk of the domain ``xml_path`` defines, plus the XML: a ``vm`` point."""
    started = time.monotonic()
    xml, info = read_domain(xml_path)
    skipped = [asdict(s) for s in info.skipped]
    summary = BackupSummary(kind="vm", source=info.name, skipped=skipped)
    with vault.lock():
        parent = _latest(vault, "vm", info.name)
        summary.parent = parent.point_id if parent is not None else None
        parents = _parent_disks(vault, parent, opts)
        writer = vault.writer()
        try:
            records = [
                _backup_one(
                    vault,
                    writer,
                    d.source,
                    d.format,
                    (d.target, d.bus),
                    opts,
                    progress,
                    _base_for(parents, d.target, d.source),
                )
                for d in info.disks
            ]
            vm = VMRecord(info.name, info.uuid, str(xml_path.absolute()), xml, records, skipped)
            root = store_vm(vault, writer, vm)
            summarize(summary, records, writer)
            meta = {
                "domain": info.name,
                "uuid": info.uuid,
                "xml_path": vm.xml_path,
                "disks": [r.summary() for r in records],
                "skipped": skipped,
            }
            commit_point(vault, writer, summary, root, meta, opts, started)
        finally:
            writer.close()
    return summary


def backup_disk(
    vault: ImageBackupVault,
    image: Path,
    opts: BackupOptions,
    *,
    fmt: str | None = None,
    source: str | None = None,
    progress: Progress | None = None,
) -> BackupSummary:
    """Back up one disk image: a ``disk`` point (source: ``source`` or the image's path)."""
    started = time.monotonic()
    image = image.absolute()
    _check_path(image, "")
    fmt = fmt or image_info(image).format
    ensure_readable(image, fmt, "")
    summary = BackupSummary(kind="disk", source=source or str(image))
    with vault.lock():
        parent = _latest(vault, "disk", summary.source)
        summary.parent = parent.point_id if parent is not None else None
        base = _base_for(_parent_disks(vault, parent, opts), "", image)
        writer = vault.writer()
        try:
            record = _backup_one(vault, writer, image, fmt, ("", ""), opts, progress, base)
            summarize(summary, [record], writer)
            meta = {"disks": [record.summary()]}
            commit_point(vault, writer, summary, record.tree_id, meta, opts, started)
        finally:
            writer.close()
    return summary
