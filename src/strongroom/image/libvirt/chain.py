"""Whether a backup may continue the change-tracking chain, or must read every disk.

An incremental reuses the base point's chunk ids for every chunk the dirty bitmap calls
clean, so it is only allowed when the whole chain is verified: the domain's newest
strongroom checkpoint exists, a point in *this* vault recorded it, and since that point the
domain kept its UUID and host and its disks kept their set, sizes, paths and formats.  Any
doubt means a full read with hashing (only new chunks are uploaded) and a new chain, with
the reason recorded.  Reasons (``reason`` codes):

=====================  ==============================================================
first-backup           no earlier point of this domain in the vault
full-requested         ``--full``
restored-in-place      an in-place restore rewrote the disks (strongroom's metadata)
no-checkpoint          the earlier points recorded no checkpoint (offline or XML backups)
checkpoint-missing     the checkpoint the last point recorded is gone
parent-not-in-vault    the newest checkpoint was made by a backup this vault does not hold
domain-redefined       the domain's UUID changed
host-changed           the domain now runs on another libvirt host
disk-added, disk-removed, disk-resized, disk-moved, disk-format-changed
bitmap-missing         (per disk) the checkpoint or image lacks the disk's bitmap
raw-disk               (per disk) a format without persistent bitmaps (raw, vmdk ...)
parent-chunks-missing  (per disk) the base point's chunks are no longer all in the vault
=====================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field
from typing import Any

from strongroom.image.libvirt.domxml import CheckpointInfo
from strongroom.records import dataclass
from strongroom.vault import RecoveryPoint

__all__ = ["Chain", "DiskFacts", "DomainFacts", "decide", "recorded_checkpoint", "same_host"]


@dataclass(frozen=True)
class DiskFacts:
    source: str
    format: str
    size: int


@dataclass(frozen=True)
class DomainFacts:
    """What the domain looks like now."""

    name: str
    uuid: str
    host: dict[str, str]  # {"uuid", "name"}: the uuid counts when both sides know it
    disks: dict[str, DiskFacts]
    checkpoints: list[CheckpointInfo]  # strongroom's, newest first
    reset: tuple[str, str] | None = None  # (reason, point) from strongroom's metadata


@dataclass
class Chain:
    """The decision: ``reason`` None means the chain continues from ``checkpoint``, with
    ``base``'s chunk map for the clean chunks."""

    base: RecoveryPoint | None = None
    checkpoint: CheckpointInfo | None = None
    reason: str | None = None
    detail: str = ""
    disk_reasons: dict[str, tuple[str, str]] = field(default_factory=dict)

    def disk(self, target: str) -> tuple[str, str] | None:
        """(reason, detail) why this disk is read in full, or None for an incremental."""
        if self.reason is not None:
            return self.reason, self.detail
        return self.disk_reasons.get(target)

    def fall_back(self, reason: str, detail: str) -> None:
        """Every disk is read in full from now on (e.g. libvirt found a bitmap broken)."""
        self.reason, self.detail = reason, detail


def same_host(a: dict[str, str], b: dict[str, str]) -> bool:
    if a.get("uuid") and b.get("uuid"):
        return a["uuid"] == b["uuid"]
    return bool(a.get("name")) and a.get("name") == b.get("name")


def recorded_checkpoint(point: RecoveryPoint) -> str | None:
    value = point.manifest.meta.get("libvirt", {}).get("checkpoint")
    return str(value) if value else None


def _recorded_disks(point: RecoveryPoint) -> dict[str, DiskFacts]:
    disks: list[dict[str, Any]] = point.manifest.meta.get("disks", [])
    return {
        d["target"]: DiskFacts(d.get("source", ""), d.get("format", ""), d.get("virtual_size", 0))
        for d in disks
    }


def _disk_change(old: dict[str, DiskFacts], new: dict[str, DiskFacts]) -> tuple[str, str] | None:
    added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
    if added:
        return "disk-added", f"disk {', '.join(added)} was added since the last point"
    if removed:
        return "disk-removed", f"disk {', '.join(removed)} was removed since the last point"
    for target in sorted(new):
        was, now = old[target], new[target]
        if was.size != now.size:
            return "disk-resized", f"disk {target} was {was.size} bytes, now {now.size}"
        if was.source != now.source:
            return "disk-moved", f"disk {target} moved from {was.source} to {now.source}"
        if was.format != now.format:
            return "disk-format-changed", f"disk {target} was {was.format}, now {now.format}"
    return None


def _identity(point: RecoveryPoint, facts: DomainFacts) -> Chain | None:
    """A new chain when the domain is not the one ``point`` recorded (UUID, host)."""
    meta = point.manifest.meta
    if meta.get("uuid") != facts.uuid:
        detail = f"UUID was {meta.get('uuid')}, now {facts.uuid}"
        return Chain(reason="domain-redefined", detail=detail)
    then: dict[str, str] = meta.get("libvirt", {}).get("host", {})
    if then and not same_host(then, facts.host):
        detail = f"host {then.get('name', '?')} then, {facts.host.get('name', '?')} now"
        return Chain(reason="host-changed", detail=detail)
    return None


def _base(points: Sequence[RecoveryPoint], facts: DomainFacts) -> Chain:
    """Find the base point and checkpoint, or the reason there is none."""
    if not points:
        return Chain(reason="first-backup", detail="no earlier point of this domain")
    changed = _identity(points[-1], facts)
    if changed is not None:
        return changed
    if not facts.checkpoints:
        recorded = recorded_checkpoint(points[-1])
        if recorded:
            return Chain(reason="checkpoint-missing", detail=f"checkpoint {recorded} is gone")
        return Chain(reason="no-checkpoint", detail="the last point recorded no checkpoint")
    newest = facts.checkpoints[0]
    holders = [p for p in points if recorded_checkpoint(p) == newest.name]
    if not holders:
        return Chain(
            reason="parent-not-in-vault",
            detail=f"no point in this vault recorded checkpoint {newest.name}",
        )
    return _identity(holders[-1], facts) or Chain(base=holders[-1], checkpoint=newest)


def decide(points: Sequence[RecoveryPoint], facts: DomainFacts, *, full: bool) -> Chain:
    """The chain decision for a backup of the domain ``facts`` describes.

    ``points`` are this vault's earlier ``vm`` points of the domain, oldest first.
    """
    if full:
        return Chain(reason="full-requested", detail="--full")
    if facts.reset is not None:
        reason, point = facts.reset
        return Chain(reason=reason, detail=f"the disks were restored from point {point[:12]}")
    chain = _base(points, facts)
    if chain.base is None or chain.checkpoint is None:
        return chain
    change = _disk_change(_recorded_disks(chain.base), facts.disks)
    if change is not None:
        chain.fall_back(*change)
        return chain
    for target, disk in facts.disks.items():
        if disk.format != "qcow2":
            code = "raw-disk" if disk.format == "raw" else "format-without-bitmaps"
            chain.disk_reasons[target] = (code, f"{disk.format} images have no persistent bitmaps")
        elif target not in chain.checkpoint.bitmaps:
            detail = f"checkpoint {chain.checkpoint.name} has no bitmap for {target}"
            chain.disk_reasons[target] = ("bitmap-missing", detail)
    return chain
