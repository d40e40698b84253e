"""VM and disk jobs in the agent: the image engine's backups, as ``strongroom backup vm NAME``
and ``strongroom backup disk IMAGE`` run them, on the hypervisor host the agent runs on.

A ``vm`` item names a libvirt domain (running or shut off; the policy's consistency,
``auto|app|crash``, goes to the engine as ``--consistency`` does) and its points are committed
under the domain's name, the source the engine gives them, so the chain (checkpoints and
parents) is the same whether the agent or the CLI made the last point.  A ``disk`` item names
an image file or a block device; its points are committed under the item's name.  Progress is
the bytes read out of the bytes to read (every disk's, as each disk's reading starts);
cancellation raises :class:`JobCancelled` from the progress callback, which stops the engine's
readers before anything is committed.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strongroom.agent.work import Outcome, Reporter

if TYPE_CHECKING:
    from strongroom.image import BackupSummary
    from strongroom.vault import Vault


class ByteProgress:
    """The image engine's per-disk progress (label, done, total), summed for the reporter."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.disks: dict[str, tuple[int, int]] = {}
        self.lock = threading.Lock()

    def __call__(self, label: str, done: int, total: int) -> None:
        with self.lock:
            self.disks[label] = (done, total)
            done_all = sum(d for d, _ in self.disks.values())
            total_all = sum(t for _, t in self.disks.values())
        self.reporter.update_bytes(done_all, total_all)


def backup_image_job(v: Vault, work: dict[str, Any], reporter: Reporter) -> Outcome:
    """Back up the item's VM (``item_kind`` vm) or disk image (``disk``)."""
    from strongroom.image import BackupOptions, backup_disk

    opts = BackupOptions()
    progress = ByteProgress(reporter)
    target = str(work["targets"][0])
    if work["item_kind"] == "disk":
        s = backup_disk(v, Path(target), opts, source=str(work["source"]), progress=progress)
    else:
        s = _backup_domain(v, target, str(work.get("consistency", "auto")), opts, progress)
    return _outcome(s)


def _backup_domain(
    v: Vault, domain: str, consistency: str, opts: Any, progress: ByteProgress
) -> BackupSummary:
    from strongroom.image.libvirt import LibvirtProvider

    provider = LibvirtProvider(None)  # LIBVIRT_DEFAULT_URI, else qemu:///system
    try:
        return provider.backup(v, domain, opts, consistency=consistency, progress=progress)
    finally:
        provider.close()


def _outcome(s: BackupSummary) -> Outcome:
    lines = [
        f"{d['target'] or Path(d['source']).name}: {d['format']}, read {d['stats']['bytes_read']}"
        f" bytes, new {d['stats']['bytes_new']} ({d['read_mode']})"
        for d in s.disks
    ]
    lines += [f"skipped {sk['target']}: {sk['reason']}" for sk in s.skipped]
    lines.append(
        f"{s.kind} {s.source}: read {s.bytes_read} bytes, added {s.bytes_new}"
        f" in {s.duration:.1f}s, {s.consistency}; point {s.point_id}"
    )
    # skipped devices (a CD-ROM, a network disk) are the engine's rule, as in `backup vm`
    return Outcome(
        "succeeded", s.point_id, s.bytes_read, s.bytes_new, len(s.disks), None, lines, s.data_bytes
    )
