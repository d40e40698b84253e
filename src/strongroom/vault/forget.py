"""Forget (soft delete), undelete and immutability of recovery points.

Forgetting a point writes its tombstone (see :mod:`strongroom.vault.tombstones`); nothing else
changes until prune removes the point after its soft-delete window.  A point younger than the
vault's ``immutable_days`` cannot be forgotten: the policy keeps it and says why.  These rules
are enforced by strongroom clients; against a hostile client holding the key, only the
storage's own retention lock (S3 Object Lock, Azure immutable blob policies) protects data.
"""

from __future__ import annotations

import contextlib
from dataclasses import field
from datetime import datetime, timedelta
from functools import partial

from strongroom.errors import ImmutablePoint, ObjectNotFound, PointNotFound
from strongroom.records import dataclass
from strongroom.storage.reserve import FORGET_KEEPS, with_reserve
from strongroom.vault.points import RecoveryPoint
from strongroom.vault.retention import Decision, KeepPolicy, group_points, select
from strongroom.vault.tombstones import Tombstone, utc_now
from strongroom.vault.vault import Vault


@dataclass
class GroupPlan:
    kind: str
    source: str
    decisions: list[Decision] = field(default_factory=list)

    @property
    def to_forget(self) -> list[RecoveryPoint]:
        return [d.point for d in self.decisions if not d.keep]


def immutable_until(
    vault: Vault, point: RecoveryPoint, now: datetime | None = None
) -> datetime | None:
    """When ``point`` stops being immutable, or None if it is not (any more)."""
    days = vault.config.settings.immutable_days
    if days <= 0:
        return None
    until = point.manifest.timestamp + timedelta(days=days)
    return until if until > (now or utc_now()) else None


def _guard_immutable(vault: Vault, decisions: list[Decision], now: datetime) -> None:
    for d in decisions:
        until = None if d.keep else immutable_until(vault, d.point, now)
        if until is not None:
            d.keep = True
            d.reasons.append(f"immutable until {until:%Y-%m-%d %H:%M} UTC")


def plan_forget(
    vault: Vault,
    policy: KeepPolicy,
    *,
    source: str | None = None,
    kind: str | None = None,
    now: datetime | None = None,
) -> list[GroupPlan]:
    """What ``policy`` keeps and forgets in each (kind, source) group; writes nothing."""
    vault.refresh_config()
    when = now or utc_now()
    chosen = [
        p
        for p in vault.points()
        if (source is None or p.manifest.source == source)
        and (kind is None or p.manifest.kind == kind)
    ]
    plans = []
    for (k, s), members in sorted(group_points(chosen).items()):
        decisions = select(members, policy)
        _guard_immutable(vault, decisions, when)
        plans.append(GroupPlan(k, s, decisions))
    return plans


def plan_forget_points(
    vault: Vault, points: list[RecoveryPoint], now: datetime | None = None
) -> list[GroupPlan]:
    """Forget exactly these points (named by the user), immutability permitting."""
    vault.refresh_config()
    plans = []
    for (k, s), members in sorted(group_points(points).items()):
        decisions = [Decision(p, keep=False, reasons=[]) for p in members]
        _guard_immutable(vault, decisions, now or utc_now())
        plans.append(GroupPlan(k, s, decisions))
    return plans


def soft_delete(
    vault: Vault, point: RecoveryPoint, reason: str, now: datetime | None = None
) -> Tombstone:
    """Write ``point``'s tombstone; it stays recoverable for the soft-delete window."""
    until = immutable_until(vault, point, now)
    if until is not None:
        raise ImmutablePoint(
            f"recovery point {point.short_id} is immutable until {until:%Y-%m-%d %H:%M} UTC "
            f"(vault setting immutable-days = {vault.config.settings.immutable_days})"
        )
    stone = Tombstone.new(point.point_id, vault.config.settings.soft_delete_days, reason, now)
    sealed = stone.seal(vault.keys, vault.vault_id)
    # forgetting is how a full disk gets freed (forget, then prune): it may use the reserve
    with_reserve(vault.backend, partial(vault.backend.put, stone.name, sealed), FORGET_KEEPS)
    vault.catalog.set_tombstone(stone)
    return stone


def apply_forget(vault: Vault, plans: list[GroupPlan], reason: str) -> list[Tombstone]:
    """Tombstone every point the plans forget (immutability is checked again for each)."""
    vault.refresh_config()
    return [soft_delete(vault, p, reason) for plan in plans for p in plan.to_forget]


def undelete(vault: Vault, spec: str) -> RecoveryPoint:
    """Bring back a soft-deleted point (any time before prune has removed it)."""
    point = vault.resolve_point(spec, include_deleted=True)
    stone = vault.tombstones().get(point.point_id)
    if stone is None:
        raise PointNotFound(f"recovery point {point.short_id} is not deleted")
    with contextlib.suppress(ObjectNotFound):  # undeleted by someone else meanwhile
        vault.backend.delete(stone.name)
    vault.catalog.drop_tombstone(point.point_id)
    return point
