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
argument against concurrent backups is in ``docs/format.md`` (§13).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np

from strongroom import failpoints
from strongroom.errors import ObjectNotFound, VaultError
from strongroom.vault.gcmark import Progress
from strongroom.vault.locks import VaultLock
from strongroom.vault.pack import pack_name
from strongroom.vault.points import POINTS_PREFIX
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
    duration: float = 0.0

    @property
    def bytes_freed(self) -> int:
        return self.bytes_deleted + self.bytes_repacked + self.orphan_bytes - self.bytes_written


def prune(
    vault: Vault, opts: PruneOptions | None = None, progress: Progress | None = None
) -> PruneReport:
    """Prune ``vault``; with ``opts.dry_run`` only report what would be done."""
    opts = opts or PruneOptions()
    started = time.monotonic()
    with vault.lock(exclusive=not opts.dry_run, wait=opts.lock_wait) as lock:
        if not opts.dry_run:
            vault.remove_stale_locks()
        _fresh_view(vault)
        report = _Prune(vault, lock, opts, progress).run()
        if not opts.dry_run:
            _finish(vault, opts, report)
    report.duration = round(time.monotonic() - started, 3)
    return report


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
        self, vault: Vault, lock: VaultLock, opts: PruneOptions, progress: Progress | None
    ) -> None:
        self.vault, self.lock, self.opts, self.progress = vault, lock, opts, progress
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
        self._remove_points(points)
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

    def _remove_points(self, points: PointsPlan) -> None:
        """The point object first, then its tombstone: never a tombstone-less removed point."""
        for p in points.remove:
            self._delete(POINTS_PREFIX + p.point_id)
            self._delete(DELETED_PREFIX + p.point_id)
            self.vault.catalog.drop_point(p.point_id)
            self.vault.catalog.drop_tombstone(p.point_id)
        for point_id in points.dangling_tombstones:
            self._delete(DELETED_PREFIX + point_id)

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

    def _delete(self, name: str) -> None:
        self._deletes += 1
        if self.lock.expired_locally() or (
            self._deletes % _CHECK_LOCK_EVERY == 0 and not self.lock.still_held()
        ):
            raise VaultError("prune lost its exclusive lock while deleting; run it again")
        with contextlib.suppress(ObjectNotFound):
            self.vault.backend.delete(name)


def _finish(vault: Vault, opts: PruneOptions, report: PruneReport) -> None:
    """Remove stray temporary files (local vaults); load the new index (old one dropped first)."""
    cleanup = getattr(vault.backend, "cleanup_temp", None)
    if callable(cleanup):
        report.temp_files_removed = int(cleanup(opts.grace_seconds))
    if report.index_objects_written:
        vault.reload_index()
        vault.catalog.reload()


def _has_work(points: PointsPlan, packs: PacksPlan) -> bool:
    return bool(
        points.remove
        or points.dangling_tombstones
        or packs.delete
        or packs.repack
        or packs.dropped
        or packs.orphans
    )
