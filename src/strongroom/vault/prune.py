"""Prune: remove expired soft-deleted points and collect the data nothing needs any more.

Under the exclusive lock (stale locks it overrides are deleted, which their holders notice):

1. plan (nothing written): mark from every live and soft-deleted point, judge every pack
   (:mod:`strongroom.vault.pruneplan`); a dry run stops here;
2. check that no point appeared meanwhile and the lock is still ours; delete the expired
   points' objects, then their tombstones;
3. repack (new packs and their index objects);
4. write the new index for every kept pack, the last object superseding the old ones;
5. delete the old index objects, then the dead, repacked and orphaned packs.

A crash anywhere leaves a consistent vault: nothing is deleted before what replaces it is
durable, and what a crash leaves behind is unreferenced data for the next prune.  The safety
argument against concurrent backups is in ``docs/format.md`` (§15.3).

On a full disk (the lock itself needed the space reserve, or a write ran out of space on the
way) prune runs the lean pass instead (:mod:`strongroom.vault.prunelean`): no repack, orphans
first, then dead packs index object by index object.  Old temporary files go first in any
case (that needs no write), and the reserve is grown back at the end.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import field, replace

import numpy as np

from strongroom import failpoints
from strongroom.errors import ObjectLocked, ObjectNotFound, StorageFull, VaultError
from strongroom.records import dataclass
from strongroom.storage.reserve import keep_reserve
from strongroom.vault.gcmark import Progress
from strongroom.vault.locks import VaultLock
from strongroom.vault.pack import pack_name
from strongroom.vault.points import POINTS_PREFIX
from strongroom.vault.prunelean import drop_dead_packs
from strongroom.vault.pruneplan import (
    PacksPlan,
    PointsPlan,
    PruneOptions,
    plan_packs,
    plan_points,
)
from strongroom.vault.repack import repack, write_new_index
from strongroom.vault.tombstones import DELETED_PREFIX
from strongroom.vault.vault import Vault
from strongroom.vault.writer import INDEX_PREFIX

__all__ = ["PruneOptions", "PruneReport", "prune"]
_CHECK_LOCK_EVERY = 256


@dataclass
class PruneReport:
    dry_run: bool
    points_live: int = 0
    points_soft_deleted: int = 0
    points_removed: list[str] = field(default_factory=list)
    tombstones_removed: int = 0
    chunks: int = 0
    chunks_live: int = 0
    trees_read: int = 0
    packs: int = 0
    pack_bytes: int = 0
    packs_young: int = 0
    packs_deleted: int = 0
    bytes_deleted: int = 0
    packs_repacked: int = 0
    bytes_repacked: int = 0
    packs_written: int = 0
    bytes_written: int = 0
    orphan_packs: int = 0
    orphan_bytes: int = 0
    orphans_young: int = 0
    packs_unknown: int = 0
    """Packs in no readable index, kept because an index object could not be read."""
    index_entries_dropped: int = 0
    index_objects_replaced: int = 0
    index_objects_written: int = 0
    temp_files_removed: int = 0
    full_disk: bool = False
    """The disk was full: only whole dead packs and orphans were deleted, nothing repacked."""
    reserve_bytes: int = 0
    """Space a local vault holds in reserve for the next full-disk prune (after this one)."""
    duration: float = 0.0
    locked: list[str] = field(default_factory=list)
    """Objects the storage refused to delete because its retention holds them (S3 Object
    Lock): left in place (points keep their tombstone and data), tried again next prune."""

    @property
    def bytes_freed(self) -> int:
        return self.bytes_deleted + self.bytes_repacked + self.orphan_bytes - self.bytes_written


def prune(
    vault: Vault, opts: PruneOptions | None = None, progress: Progress | None = None
) -> PruneReport:
    """Prune ``vault``; with ``opts.dry_run`` only report what would be done."""
    opts = opts or PruneOptions()
    started = time.monotonic()
    if opts.dry_run:
        with vault.read_lock(wait=opts.lock_wait):
            _fresh_view(vault)
            report = _Prune(vault, None, opts, progress).run()
    else:
        lock, full = _exclusive_lock(vault, opts)
        with lock:
            vault.remove_stale_locks()
            temp_removed = _remove_temp(vault, opts)
            _fresh_view(vault)
            report = _run(vault, lock, opts, progress, full)
            report.temp_files_removed = temp_removed
            _finish(vault, report)
    report.duration = round(time.monotonic() - started, 3)
    return report


def _exclusive_lock(vault: Vault, opts: PruneOptions) -> tuple[VaultLock, bool]:
    """The exclusive lock, and whether the disk was full (the lock needed the reserve)."""
    try:
        return vault.lock(exclusive=True, wait=opts.lock_wait), False
    except StorageFull:
        return vault.lock(exclusive=True, wait=opts.lock_wait, use_reserve=0.0), True


def _run(
    vault: Vault, lock: VaultLock, opts: PruneOptions, progress: Progress | None, full: bool
) -> PruneReport:
    """The whole prune; on a full disk (or when it fills up on the way) the lean one."""
    if not full:
        first = _Prune(vault, lock, opts, progress)
        try:
            return first.run()
        except StorageFull:
            pass  # what it wrote is redundant or unreferenced: the lean pass starts afresh
        vault.reload_index()
        _fresh_view(vault)
        report = _Prune(vault, lock, opts, progress).run_lean()
        report.points_removed[:0] = first.report.points_removed
        return report
    return _Prune(vault, lock, opts, progress).run_lean()


def _fresh_view(vault: Vault) -> None:
    """The index and catalog as they are now, under the lock (and rows grouped by pack).

    Index objects that fail to verify are skipped (the plan then keeps every pack no
    readable index lists, see :func:`~strongroom.vault.pruneplan.plan_packs`)."""
    listed = {info.name for info in vault.backend.list(INDEX_PREFIX)}
    if listed != vault.index_names or not vault.index.bulk_only or vault.problems.index:
        vault.reload_index()
    vault.catalog.reload()
    vault.refresh_config()


class _Prune:
    def __init__(
        self, vault: Vault, lock: VaultLock | None, opts: PruneOptions, progress: Progress | None
    ) -> None:
        self.vault, self._lock, self.opts, self.progress = vault, lock, opts, progress
        self.old_index = sorted(vault.index_names)
        self.report = PruneReport(dry_run=opts.dry_run)
        self._deletes = 0

    def run(self) -> PruneReport:
        points = plan_points(self.vault)
        packs = plan_packs(self.vault, points.keep, self.opts, self.progress)
        self._describe(points, packs)
        if self.opts.dry_run or not _has_work(points, packs):
            return self.report
        self._guard(points)
        points, packs = self._remove_points(points, packs, self.opts)
        if not _has_work(points, packs):
            return self.report  # what was left to do is held by the storage's retention
        failpoints.hit("prune-after-points")
        self.report.packs_written, self.report.bytes_written = repack(
            self.vault, packs, self.progress
        )
        failpoints.hit("prune-after-repack")
        written = write_new_index(self.vault, packs, self.old_index, self.opts)
        self.report.index_objects_written = len(written)
        failpoints.hit("repack-before-delete")
        self._guard(points)
        self._delete_old(packs)
        return self.report

    def run_lean(self) -> PruneReport:
        """Free space on a full disk: no repack, no whole new index (``vault/prunelean.py``).
        Orphans go first (no write at all), then the dead packs, index object by object."""
        self.report.full_disk = True
        opts = replace(self.opts, repack_threshold=0.0)
        points = plan_points(self.vault)
        packs = plan_packs(self.vault, points.keep, opts, self.progress)
        self._describe(points, packs)
        if not _has_work(points, packs):
            return self.report
        self._guard(points)
        points, packs = self._remove_points(points, packs, opts)
        spared = self._late_index_packs()
        for orphan in packs.orphans:
            if orphan.name.rsplit("/", 1)[-1] not in spared:
                self._delete(orphan.name)
        ids = self.vault.index.pack_ids
        dead = {ids[pos] for pos in packs.delete + packs.dropped}
        try:
            written, _ = drop_dead_packs(
                self.vault, self.old_index, dead, self._drop, self._late_index_packs()
            )
        except StorageFull as exc:
            raise VaultError(
                f"the disk is full and prune's space reserve did not suffice ({exc}); prune "
                "freed what it could and lost nothing: free some space and run it again"
            ) from None
        self.report.index_objects_written = written
        return self.report

    def _describe(self, points: PointsPlan, packs: PacksPlan) -> None:
        r, index, table = self.report, self.vault.index, packs.table
        r.points_live = len(points.keep) - len(points.soft_deleted)
        r.points_soft_deleted = len(points.soft_deleted)
        r.points_removed = [p.point_id for p in points.remove]
        r.tombstones_removed = len(points.remove) + len(points.dangling_tombstones)
        r.chunks = index.rows
        r.chunks_live = int(np.count_nonzero(packs.live))
        r.trees_read = packs.trees_read
        r.packs = (
            len(index.pack_ids)
            - len(packs.dropped)
            + len(packs.orphans)
            + packs.young_orphans
            + packs.unknown
        )
        r.pack_bytes = int(packs.sizes.sum()) + sum(o.size for o in packs.orphans)
        r.packs_young = packs.young
        r.packs_deleted = len(packs.delete)
        r.bytes_deleted = int(packs.sizes[packs.delete].sum()) if packs.delete else 0
        r.packs_repacked = len(packs.repack)
        r.bytes_repacked = int(packs.sizes[packs.repack].sum()) if packs.repack else 0
        r.bytes_written = int(table.live_bytes[packs.repack].sum()) if packs.repack else 0
        r.orphan_packs = len(packs.orphans)
        r.orphan_bytes = sum(o.size for o in packs.orphans)
        r.orphans_young = packs.young_orphans
        r.packs_unknown = packs.unknown
        r.index_entries_dropped = int(table.rows[packs.dropped].sum()) if packs.dropped else 0
        r.index_objects_replaced = len(self.old_index)

    @property
    def lock(self) -> VaultLock:
        """The exclusive lock (a dry run, which has none, never gets to use it)."""
        assert self._lock is not None
        return self._lock

    def _guard(self, points: PointsPlan) -> None:
        """Stop before deleting if the lock is no longer ours or a point appeared meanwhile."""
        if not self.lock.still_held():
            raise VaultError(
                "prune lost its exclusive lock (suspended or cut off too long); it stopped "
                "before deleting anything more: run it again"
            )
        known = {p.point_id for p in points.keep} | {p.point_id for p in points.remove}
        known |= points.unreadable
        listed = {i.name[len(POINTS_PREFIX) :] for i in self.vault.backend.list(POINTS_PREFIX)}
        if listed - known:
            raise VaultError(
                "a recovery point was committed while prune ran (another client ignored the "
                "lock); prune stopped before deleting anything more: run it again"
            )

    def _remove_points(
        self, points: PointsPlan, packs: PacksPlan, opts: PruneOptions
    ) -> tuple[PointsPlan, PacksPlan]:
        """The point object first, then its tombstone: never a tombstone-less removed point.

        A point the storage's retention holds stays soft-deleted, so its data is planned
        again as live (nothing of it has been deleted yet)."""
        held = []
        for p in points.remove:
            if not self._delete(POINTS_PREFIX + p.point_id):
                held.append(p)
                continue
            self._delete(DELETED_PREFIX + p.point_id)
            self.vault.catalog.drop_point(p.point_id)
            self.vault.catalog.drop_tombstone(p.point_id)
        for point_id in points.dangling_tombstones:
            self._delete(DELETED_PREFIX + point_id)
        if not held:
            return points, packs
        points = replace(
            points,
            keep=points.keep + held,
            soft_deleted=points.soft_deleted + held,
            remove=[p for p in points.remove if p not in held],
        )
        packs = plan_packs(self.vault, points.keep, opts, self.progress)
        self._describe(points, packs)
        return points, packs

    def _delete_old(self, packs: PacksPlan) -> None:
        for name in self.old_index:
            self._delete(name)
            self.vault.index_names.discard(name)
            failpoints.hit("prune-mid-delete")
        protected = self._late_index_packs()
        ids = self.vault.index.pack_ids
        names = [pack_name(ids[pos]) for pos in packs.delete + packs.repack]
        names += [o.name for o in packs.orphans]
        for done, name in enumerate(names, 1):
            if name.rsplit("/", 1)[-1] not in protected:
                self._delete(name)
            if self.progress:
                self.progress("delete", done, len(names))

    def _late_index_packs(self) -> set[str]:
        """Packs named by index objects that appeared during prune (a client ignoring locks)."""
        from strongroom.vault.index import decode_index

        late = {i.name for i in self.vault.backend.list(INDEX_PREFIX)} - self.vault.index_names
        protected: set[str] = set()
        for name in late:
            with contextlib.suppress(ObjectNotFound, VaultError):
                plain = self.vault.open_index_object(name)
                protected |= {rec.pack_id.hex() for rec in decode_index(plain, name)[0]}
        return protected

    def _drop(self, name: str) -> None:
        self._delete(name)

    def _delete(self, name: str) -> bool:
        """Delete ``name`` (gone already is fine); False if the storage's retention holds it.

        A held index object is harmless (the new index supersedes it), a held pack is an
        orphan for a later prune."""
        self._deletes += 1
        if self.lock.expired_locally() or (
            self._deletes % _CHECK_LOCK_EVERY == 0 and not self.lock.still_held()
        ):
            raise VaultError("prune lost its exclusive lock while deleting; run it again")
        try:
            self.vault.backend.delete(name)
        except ObjectNotFound:
            pass
        except ObjectLocked:
            self.report.locked.append(name)
            return False
        return True


def _remove_temp(vault: Vault, opts: PruneOptions) -> int:
    """Stray temporary files of a local vault older than the grace period (dead writers'):
    first, because removing them needs no write and frees space on a full disk."""
    cleanup = getattr(vault.backend, "cleanup_temp", None)
    return int(cleanup(opts.grace_seconds)) if callable(cleanup) else 0


def _finish(vault: Vault, report: PruneReport) -> None:
    """Load the new index (old one dropped first); grow a local vault's reserve back."""
    if report.index_objects_written or report.packs_deleted:
        vault.reload_index()
        vault.catalog.reload()
    report.reserve_bytes = keep_reserve(vault.backend)


def _has_work(points: PointsPlan, packs: PacksPlan) -> bool:
    return bool(
        points.remove
        or points.dangling_tombstones
        or packs.delete
        or packs.repack
        or packs.dropped
        or packs.orphans
    )
