"""Backing up a libvirt domain: running (pull-mode, dirty bitmaps) or shut off (qemu-nbd).

A running domain's disks are read from libvirt's pull-mode backup (``session.py``); an
incremental asks block status for ``qemu:dirty-bitmap:backup-<target>`` and reads only the
chunks overlapping dirty extents.  A shut-off domain's disks are read through
``qemu-nbd --read-only``, with ``--bitmap`` for a qcow2 image holding the newest checkpoint's
bitmap.  libvirt cannot make checkpoints of a shut-off domain, so such a point records the
checkpoint it read from, and the next backup continues from there (its bitmap then covers
more than needed, never less).  ``chain.py`` decides whether a disk may be incremental.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, field
from pathlib import Path
from typing import Any

from strongroom.errors import ImageError
from strongroom.image.backup import (
    BackupOptions,
    BackupSummary,
    Progress,
    commit_point,
    ensure_readable,
    latest_point,
    summarize,
)
from strongroom.image.disks import Disk, NBDDisk, open_disk
from strongroom.image.domain import DomainInfo
from strongroom.image.formats import image_info
from strongroom.image.libvirt.chain import Chain, DiskFacts, DomainFacts, decide
from strongroom.image.libvirt.checkpoints import (
    delete_checkpoint,
    image_bitmaps,
    new_checkpoint_name,
    strongroom_checkpoints,
)
from strongroom.image.libvirt.conn import (
    Connection,
    LibvirtError,
    is_active,
    libvirt_errors,
    libvirt_module,
)
from strongroom.image.libvirt.diskread import DiskJob, base_map, read_job
from strongroom.image.libvirt.domxml import BackupDisk, domain_info
from strongroom.image.libvirt.meta import clear_reset, read_reset
from strongroom.image.libvirt.session import CONSISTENCY_MODES, Consistency, PullBackup
from strongroom.image.records import DiskRecord, VMRecord, load_point, store_vm
from strongroom.image.vaultview import ImageBackupVault
from strongroom.records import dataclass
from strongroom.vault import ChunkWriter

__all__ = ["LibvirtOptions", "backup_domain"]


@dataclass
class LibvirtOptions:
    consistency: str = "auto"
    full: bool = False

    def __post_init__(self) -> None:
        if self.consistency not in CONSISTENCY_MODES:
            raise ImageError(f"consistency must be one of {', '.join(CONSISTENCY_MODES)}")


@dataclass
class _Run:
    """One domain's backup: what it found, and where it writes."""

    conn: Connection
    vault: ImageBackupVault
    writer: ChunkWriter
    dom: Any
    running: bool
    xml: str  # the persistent definition: what a restore defines again
    live_xml: str
    info: DomainInfo
    facts: DomainFacts
    opts: BackupOptions = field(default_factory=BackupOptions)
    lopts: LibvirtOptions = field(default_factory=LibvirtOptions)
    progress: Progress | None = None
    summary: BackupSummary = field(default_factory=BackupSummary)
    started: float = 0.0


def _disk_size(dom: Any, running: bool, target: str, source: Path, fmt: str) -> int:
    if running:
        with libvirt_errors(f"cannot read the size of disk {target}"):
            return int(dom.blockInfo(target, 0)[0])
    return image_info(source, fmt).virtual_size


def _inspect(conn: Connection, name: str) -> tuple[Any, bool, str, str, DomainInfo, DomainFacts]:
    lv = conn.lv
    dom = conn.domain(name)
    with libvirt_errors(f"cannot read the definition of {name}"):
        running = is_active(dom)
        xml = str(dom.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE | lv.VIR_DOMAIN_XML_SECURE))
        live = str(dom.XMLDesc(lv.VIR_DOMAIN_XML_SECURE)) if running else xml
    info = domain_info(live)
    if not info.disks:
        skipped = "; ".join(f"{s.target}: {s.reason}" for s in info.skipped)
        raise ImageError(f"{name}: the domain has no disk to back up ({skipped or 'none'})")
    disks = {
        d.target: DiskFacts(
            str(d.source), d.format, _disk_size(dom, running, d.target, d.source, d.format)
        )
        for d in info.disks
    }
    facts = DomainFacts(
        name=info.name,
        uuid=info.uuid,
        host=conn.host(),
        disks=disks,
        checkpoints=strongroom_checkpoints(dom),
        reset=read_reset(dom),
    )
    return dom, running, xml, live, info, facts


def _jobs(run: _Run, chain: Chain) -> list[DiskJob]:
    """Per disk: full, or incremental from the base point's map; and why."""
    jobs = []
    base_vm = load_point(run.vault, chain.base) if chain.base is not None else None
    for disk in run.info.disks:
        size = run.facts.disks[disk.target].size
        job = DiskJob(disk, size, chain.disk(disk.target))
        if job.reason is None and base_vm is not None and chain.checkpoint is not None:
            cmap, why = base_map(run.vault, base_vm, disk.target, size, run.opts.chunk_size)
            if why is not None:
                job.reason = why
            else:
                job.base, job.base_checkpoint = cmap, chain.checkpoint.name
                job.base_point = chain.base.point_id if chain.base is not None else None
        jobs.append(job)
    return jobs


def _finish(
    run: _Run,
    records: list[DiskRecord],
    consistency: Consistency,
    checkpoint: str | None,
    chain: Chain,
) -> None:
    """Write the VM tree and commit the point."""
    info, summary = run.info, run.summary
    provider = {"name": "libvirt", "uri": run.conn.uri}
    vm = VMRecord(info.name, info.uuid, "", run.xml.encode(), records, summary.skipped, provider)
    root = store_vm(run.vault, run.writer, vm)
    summarize(summary, records, run.writer)
    continued = [r for r in records if r.tracking.get("chain") == "continued"]
    base = str(continued[0].tracking["base_point"]) if continued else None
    summary.parent = base or latest_point(run.vault, "vm", info.name)
    summary.consistency = consistency.achieved
    meta = {
        "domain": info.name,
        "uuid": info.uuid,
        "xml_path": "",
        "disks": [r.summary() for r in records],
        "skipped": summary.skipped,
        "libvirt": {
            "uri": run.conn.uri,
            "host": run.conn.host(),
            "state": "running" if run.running else "shut off",
            "checkpoint": checkpoint,
        },
        "chain": {
            "state": "continued" if continued else "new",
            "reason": chain.reason,
            "detail": chain.detail,
            "base_point": base,
            "base_checkpoint": chain.checkpoint.name if continued and chain.checkpoint else None,
        },
        "consistency": asdict(consistency),
    }
    commit_point(run.vault, run.writer, summary, root, meta, run.opts, run.started)


def _start(
    session: PullBackup, jobs: list[DiskJob], skip: list[str], requested: str
) -> Consistency:
    def plan() -> list[BackupDisk]:
        return [
            BackupDisk(j.disk.target, j.base_checkpoint if j.incremental else None, fmt == "qcow2")
            for j in jobs
            for fmt in [j.disk.format]
        ]

    try:
        return session.start(plan(), skip, requested)
    except LibvirtError as exc:
        if exc.code != libvirt_module().VIR_ERR_CHECKPOINT_INCONSISTENT:
            raise
        for job in jobs:
            if job.incremental:
                job.fall_back("bitmap-missing", str(exc))
        return session.start(plan(), skip, requested)


def _backup_running(run: _Run, chain: Chain) -> None:
    jobs = _jobs(run, chain)
    qcow2 = any(j.disk.format == "qcow2" for j in jobs)
    session = PullBackup(run.dom, run.live_xml, new_checkpoint_name() if qcow2 else None)
    skip = [s.target for s in run.info.skipped if s.target != "?"]
    committed = False
    try:
        consistency = _start(session, jobs, skip, run.lopts.consistency)
        try:
            records = []
            for job in jobs:
                if job.disk.format == "qcow2":
                    job.tracking["checkpoint"] = session.checkpoint
                disk = session.export(job.disk.target, job.incremental)
                mode = "libvirt-pull-dirty-bitmap" if job.incremental else "libvirt-pull-full"
                records.append(_read(run, disk, job, mode))
        finally:
            session.end_job()
        _finish(run, records, consistency, session.checkpoint, chain)
        committed = True
    finally:
        if not committed:
            session.end_job()
            session.drop_checkpoint()
    _after(run, session.checkpoint)


def _read(run: _Run, disk: Disk, job: DiskJob, mode: str) -> DiskRecord:
    try:
        mode = mode or disk.read_mode
        return read_job(run.vault, run.writer, disk, job, mode, run.opts, run.progress)
    finally:
        disk.close()


def _delete_old(dom: Any, name: str) -> None:
    """Delete an older checkpoint; one libvirt cannot delete (its bitmap is broken) is
    forgotten instead, so it never becomes a base again."""
    try:
        delete_checkpoint(dom, name)
    except LibvirtError:
        with contextlib.suppress(LibvirtError):
            delete_checkpoint(dom, name, metadata_only=True)


def _after(run: _Run, keep: str | None) -> None:
    """After the commit: older strongroom checkpoints go, and any new-chain mark."""
    if keep is not None:
        for cp in strongroom_checkpoints(run.dom):
            if cp.name != keep:
                _delete_old(run.dom, cp.name)
    if run.facts.reset is not None:
        clear_reset(run.dom)


def _offline_disk(run: _Run, job: DiskJob) -> tuple[Disk, str]:
    source, fmt = job.disk.source, job.disk.format
    ensure_readable(source, fmt, f"{run.info.name}: disk {job.disk.target}: ")
    if job.incremental and job.base_checkpoint is not None:
        flags = image_bitmaps(source).get(job.base_checkpoint)
        if flags is None or "in-use" in flags:
            state = "missing" if flags is None else "inconsistent (in use)"
            detail = f"bitmap {job.base_checkpoint} is {state} in {source}"
            job.fall_back("bitmap-missing", detail)
        else:
            return NBDDisk(source, fmt, bitmap=job.base_checkpoint), "qemu-nbd-bitmap"
    return open_disk(source, fmt, direct_raw=run.opts.direct_raw), ""


def _backup_offline(run: _Run, chain: Chain) -> None:
    jobs = _jobs(run, chain)
    keeps = chain.reason is None and chain.checkpoint is not None
    checkpoint = chain.checkpoint.name if keeps and chain.checkpoint else None
    records = []
    for job in jobs:
        disk, mode = _offline_disk(run, job)
        if job.incremental:
            job.tracking["checkpoint"] = checkpoint
        records.append(_read(run, disk, job, mode))
    consistency = Consistency(run.lopts.consistency, "offline")
    _finish(run, records, consistency, checkpoint, chain)
    _after(run, None)


def backup_domain(
    vault: ImageBackupVault,
    conn: Connection,
    name: str,
    opts: BackupOptions,
    lopts: LibvirtOptions,
    progress: Progress | None = None,
) -> BackupSummary:
    """Back up the libvirt domain ``name`` (running or shut off): a ``vm`` point."""
    started = time.monotonic()
    dom, running, xml, live, info, facts = _inspect(conn, name)
    skipped = [asdict(s) for s in info.skipped]
    summary = BackupSummary(kind="vm", source=info.name, skipped=skipped)
    with vault.lock():
        points = [
            p for p in vault.points() if p.manifest.kind == "vm" and p.manifest.source == info.name
        ]
        chain = decide(points, facts, full=lopts.full)
        writer = vault.writer()
        run = _Run(conn, vault, writer, dom, running, xml, live, info, facts, opts, lopts)
        run.progress, run.summary, run.started = progress, summary, started
        try:
            (_backup_running if running else _backup_offline)(run, chain)
        finally:
            writer.close()
    return summary
