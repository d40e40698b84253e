"""Prune's plan: which points go, and what happens to every pack.

Points: soft-deleted points whose window ended (and that are not immutable) are removed; every
other point, soft-deleted ones included, is live for GC.  Packs, judged on the index and one
listing of ``data/`` (sizes and ages):

- younger than the grace period (or of unknown age): kept whole, whatever they hold;
- no live chunk: deleted;
- live share (stored bytes of its live chunks / of all its chunks) under the repack
  threshold: repacked, lowest share first, up to the repack budget;
- otherwise kept whole (its dead chunks stay indexed until a later repack);
- present but in no index object ("orphans", left by interrupted backups): deleted once older
  than the grace period, unless an index object could not be read: then no pack in no
  readable index is deleted (it may be what that object lists), only counted as unknown;
- indexed but missing: dropped from the index if no point needs them, else prune refuses.
"""

from __future__ import annotations

import re
import time
from dataclasses import field

import numpy as np

from strongroom.errors import MisnamedObject, RepairNeeded
from strongroom.records import dataclass
from strongroom.storage.backend import ObjectInfo
from strongroom.vault.forget import immutable_until
from strongroom.vault.gcmark import Marker, PackTable, Progress, account
from strongroom.vault.pack import pack_name
from strongroom.vault.points import RecoveryPoint
from strongroom.vault.tombstones import utc_now
from strongroom.vault.vault import Vault

_PACK_NAME = re.compile(r"^data/([0-9a-f]{2})/([0-9a-f]{64})$")


@dataclass(frozen=True)
class PruneOptions:
    dry_run: bool = False
    grace_seconds: float = 3600.0
    """Packs and index entries younger than this are never collected (see docs/format.md)."""
    repack_threshold: float = 0.8
    """Repack packs whose live share is under this (0 never repacks, 1 repacks any waste)."""
    max_repack_bytes: int | None = None
    """Read at most this many bytes of packs to repack (None: no limit)."""
    lock_wait: float | None = None
    entries_per_index: int = 1 << 15


@dataclass
class PointsPlan:
    keep: list[RecoveryPoint] = field(default_factory=list)
    soft_deleted: list[RecoveryPoint] = field(default_factory=list)
    remove: list[RecoveryPoint] = field(default_factory=list)
    dangling_tombstones: list[str] = field(default_factory=list)
    unreadable: set[str] = field(default_factory=set)
    """Ids (last name components) of point objects that failed to verify: left alone."""


@dataclass
class PacksPlan:
    table: PackTable
    live: np.ndarray
    keep: np.ndarray
    """Per pack position: its rows go into the new index unchanged."""
    sizes: np.ndarray
    delete: list[int] = field(default_factory=list)
    repack: list[int] = field(default_factory=list)
    young: int = 0
    dropped: list[int] = field(default_factory=list)
    orphans: list[ObjectInfo] = field(default_factory=list)
    young_orphans: int = 0
    unknown: int = 0
    trees_read: int = 0


def plan_points(vault: Vault) -> PointsPlan:
    """Split the points: live, soft-deleted within their window, due for removal.

    A point object that fails to verify (junk, another vault's, misnamed) is skipped and left
    alone: nobody can restore from it, so it protects no data (``check --repair`` removes
    it), and a tombstone bearing its name is not dangling.  A genuine point under a wrong
    name (:class:`~strongroom.errors.MisnamedObject`) stops prune: its data is needed."""
    points = vault.points(strict=False, include_deleted=True)
    for exc in vault.problems.points:
        if isinstance(exc, MisnamedObject):
            raise RepairNeeded(
                f"{exc}: run `strongroom check --repair` (it stores the point under its right "
                "name) first; prune changed nothing"
            )
    stones = vault.tombstones()
    now = utc_now()
    plan = PointsPlan()
    for p in points:
        stone = stones.get(p.point_id)
        if stone is None:
            plan.keep.append(p)
        elif stone.expired(now) and immutable_until(vault, p, now) is None:
            plan.remove.append(p)
        else:
            plan.keep.append(p)
            plan.soft_deleted.append(p)
    plan.unreadable = {
        name.rsplit("/", 1)[-1] for name in vault.problems.unreadable_names("points")
    }
    known = {p.point_id for p in points} | plan.unreadable
    plan.dangling_tombstones = sorted(pid for pid in stones if pid not in known)
    return plan


def list_packs(vault: Vault) -> dict[bytes, ObjectInfo]:
    found = {}
    for info in vault.backend.list("data/"):
        m = _PACK_NAME.match(info.name)
        if m and m.group(1) == m.group(2)[:2]:
            found[bytes.fromhex(m.group(2))] = info
    return found


def plan_packs(
    vault: Vault, keep: list[RecoveryPoint], opts: PruneOptions, progress: Progress | None
) -> PacksPlan:
    marker = Marker(vault, progress)
    live = marker.mark_points(keep)
    table = account(vault.index, live)
    listing = list_packs(vault)
    npacks = len(vault.index.pack_ids)
    plan = PacksPlan(table, live, np.zeros(npacks, bool), np.zeros(npacks, np.int64))
    plan.trees_read = marker.trees_read
    cutoff = time.time() - opts.grace_seconds
    candidates = _classify(vault, plan, listing, cutoff)
    _choose_repacks(plan, candidates, opts)
    indexed = set(vault.index.pack_ids)
    unknown = bool(vault.problems.index)
    for pack_id, info in listing.items():
        if pack_id in indexed:
            continue
        if unknown:
            plan.unknown += 1
        elif info.mtime is not None and info.mtime <= cutoff:
            plan.orphans.append(info)
        else:
            plan.young_orphans += 1
    return plan


def _classify(
    vault: Vault, plan: PacksPlan, listing: dict[bytes, ObjectInfo], cutoff: float
) -> list[tuple[float, int]]:
    """Fill keep/delete/dropped; return repack candidates as (live share, position)."""
    candidates = []
    table = plan.table
    for pos, pack_id in enumerate(vault.index.pack_ids):
        info = listing.get(pack_id)
        if info is None:
            if table.live_rows[pos]:
                raise RepairNeeded(
                    f"{pack_name(pack_id)} is indexed but missing, and recovery points need "
                    f"{int(table.live_rows[pos])} of its chunks; run `strongroom check --repair` "
                    "first; prune changed nothing"
                )
            plan.dropped.append(pos)
            continue
        plan.sizes[pos] = info.size
        if info.mtime is None or info.mtime > cutoff:
            plan.keep[pos] = True
            plan.young += 1
        elif not table.live_rows[pos]:
            plan.delete.append(pos)
        else:
            share = float(table.live_bytes[pos]) / max(int(table.blob_bytes[pos]), 1)
            candidates.append((share, pos))
    return candidates


def _choose_repacks(
    plan: PacksPlan, candidates: list[tuple[float, int]], opts: PruneOptions
) -> None:
    budget = opts.max_repack_bytes
    used = 0
    for share, pos in sorted(candidates):
        size = int(plan.sizes[pos])
        fits = budget is None or used + size <= budget
        if share < opts.repack_threshold and fits:
            plan.repack.append(pos)
            used += size
        else:
            plan.keep[pos] = True
