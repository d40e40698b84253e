"""A prune job in the designated maintenance agent: the vault's own prune (the one
``strongroom prune`` runs), with progress, a cancel honoured while it only plans, and what it
freed in the job's log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strongroom.agent.work import Outcome, Reporter

if TYPE_CHECKING:
    from strongroom.vault import Vault

CANCELLABLE = ("mark",)
"""Phases that write nothing: a cancel there stops the prune with nothing changed.  Once
prune deletes, it finishes (a stop there would be safe too, but only leaves work behind)."""


def prune_job(v: Vault, work: dict[str, Any], reporter: Reporter) -> Outcome:
    from strongroom.vault.prune import PruneOptions, prune

    grace = float(work.get("grace_hours", 1.0))

    def progress(phase: str, done: int, total: int) -> None:
        if phase in CANCELLABLE:
            reporter.update_bytes(done, total)  # raises JobCancelled once the server asks
        else:
            reporter.bytes, reporter.total_bytes = done, total

    r = prune(v, PruneOptions(grace_seconds=grace * 3600), progress)
    removed = r.packs_deleted + r.packs_repacked + r.orphan_packs
    lines = [
        f"points: {r.points_live} live, {r.points_soft_deleted} soft-deleted (kept),"
        f" {len(r.points_removed)} removed after their soft-delete window",
        f"packs: {r.packs_deleted} deleted, {r.packs_repacked} repacked,"
        f" {r.orphan_packs} orphans removed, {r.packs_young + r.orphans_young} kept (grace)",
        f"freed {max(r.bytes_freed, 0)} bytes; removed {removed} pack(s),"
        f" {len(r.points_removed)} point(s), {r.index_objects_replaced} index object(s)"
        f" in {r.duration:.1f}s",
    ]
    if r.locked:
        lines.append(f"kept {len(r.locked)} object(s) the storage's retention still holds")
    return Outcome(
        "succeeded",
        bytes_read=r.bytes_repacked,
        bytes_added=r.bytes_written,
        files=removed,
        log=lines,
    )
