"""Reading one disk of a libvirt backup: in full, or only the chunks a dirty bitmap names.

An incremental starts from a copy of the base point's chunk map and re-reads every chunk
overlapping a dirty extent; the base map is only used when its chunk size and count match
and every chunk id it names is still in the vault's index (else a full read).
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from strongroom.errors import ImageError
from strongroom.image.backup import BackupOptions, Progress, ReadPlan, read_disk
from strongroom.image.chunkmap import ChunkMap, store_map
from strongroom.image.disks import Disk, ExportDisk, NBDDisk
from strongroom.image.domain import DomainDisk
from strongroom.image.records import DiskRecord, VMRecord, store_disk
from strongroom.image.scan import chunk_indexes
from strongroom.image.vaultview import ImageBackupVault
from strongroom.records import dataclass
from strongroom.vault import ChunkWriter

__all__ = ["DiskJob", "base_map", "read_job"]


@dataclass
class DiskJob:
    """One disk to back up: ``reason`` (code, detail) says why it is read in full; with no
    reason and a ``base`` map it is an incremental from ``base_checkpoint``."""

    disk: DomainDisk
    size: int
    reason: tuple[str, str] | None
    base: ChunkMap | None = None
    base_point: str | None = None
    base_checkpoint: str | None = None
    tracking: dict[str, Any] = field(default_factory=dict)

    @property
    def incremental(self) -> bool:
        return self.reason is None and self.base is not None

    def fall_back(self, reason: str, detail: str) -> None:
        self.reason, self.base = (reason, detail), None
        self.base_point = self.base_checkpoint = None


def base_map(
    vault: ImageBackupVault, base: VMRecord, target: str, size: int, chunk_size: int
) -> tuple[ChunkMap | None, tuple[str, str] | None]:
    """The base point's map of ``target``, or why it cannot serve as a base."""
    try:
        record = base.disk(target)
    except ImageError:  # not in the base point
        return None, ("disk-added", f"the base point has no disk {target}")
    if record.chunk_size != chunk_size:
        detail = f"chunk size {record.chunk_size} then, {chunk_size} now"
        return None, ("chunk-size-changed", detail)
    if record.virtual_size != size:
        return None, ("disk-resized", f"disk {target} was {record.virtual_size} bytes")
    cmap = record.chunk_map(vault)
    missing = len(vault.missing_chunks(cmap.distinct_ids()))
    if missing:
        detail = f"{missing} chunk(s) of the base point are no longer in the vault"
        return None, ("parent-chunks-missing", detail)
    return cmap, None


def read_job(
    vault: ImageBackupVault,
    writer: ChunkWriter,
    disk: Disk,
    job: DiskJob,
    read_mode: str,
    opts: BackupOptions,
    progress: Progress | None,
) -> DiskRecord:
    """Read ``disk`` as ``job`` says; its stored record (map pieces and tree written)."""
    cs = opts.chunk_size
    if job.incremental:
        assert isinstance(disk, ExportDisk | NBDDisk), "a dirty bitmap needs an NBD disk"
        plan = ReadPlan(list(chunk_indexes(disk.dirty_extents(), cs)), job.base)
    else:
        plan = ReadPlan(list(chunk_indexes(disk.data_extents(), cs)))
    if disk.size != job.size:
        raise ValueError(f"disk {job.disk.target} is {disk.size} bytes, expected {job.size}")
    cmap, stats = read_disk(writer, disk, plan, cs, job.disk.target, opts, progress)
    reason = job.reason or (None, "")
    tracking = {
        "chain": "continued" if job.incremental else "new",
        "reason": reason[0],
        "detail": reason[1],
        "base_point": job.base_point,
        "base_checkpoint": job.base_checkpoint,
    } | job.tracking
    record = DiskRecord(
        target=job.disk.target,
        bus=job.disk.bus,
        source=str(job.disk.source),
        format=job.disk.format,
        virtual_size=disk.size,
        chunk_size=cs,
        chunks=cmap.count,
        read_mode=read_mode,
        change_mode="dirty-bitmap" if job.incremental else "full-read-hash",
        stats=stats,
        tracking=tracking,
    )
    record.pieces = store_map(vault, writer, cmap)
    store_disk(vault, writer, record)
    return record
