"""Soft delete: a forgotten recovery point keeps its data until its tombstone expires.

A tombstone is the sealed object ``deleted/<point id>`` (magic ``SRDL``, the point key) holding
JSON ``{"point", "deleted_at", "purge_after", "host", "user", "reason"}``.  Its content must
name the same point as its object name, so a tombstone cannot be replayed against another
point.  ``purge_after`` is fixed when the point is forgotten (``deleted_at`` plus the vault's
``soft_delete_days`` at that moment): lowering the setting later never shortens the window of
points already forgotten.  Undelete removes the tombstone; prune removes the point object and
then the tombstone once ``purge_after`` has passed.
"""

from __future__ import annotations

import getpass
import json
import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from strongroom.errors import IntegrityError
from strongroom.hostname import host_name
from strongroom.records import dataclass
from strongroom.vault.crypto import VaultKeys
from strongroom.vault.envelope import MAGIC_DELETED, open_object, seal_object

DELETED_PREFIX = "deleted/"
_POINT_ID = re.compile(r"^[0-9a-f]{64}$")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Tombstone:
    """Why and when a point was forgotten, and from when prune may remove it."""

    point: str
    deleted_at: str
    purge_after: str
    host: str
    user: str
    reason: str

    @classmethod
    def new(
        cls, point_id: str, window_days: int, reason: str, now: datetime | None = None
    ) -> Tombstone:
        when = now or utc_now()
        return cls(
            point=point_id,
            deleted_at=when.isoformat(timespec="seconds"),
            purge_after=(when + timedelta(days=window_days)).isoformat(timespec="seconds"),
            host=host_name(),
            user=getpass.getuser(),
            reason=reason,
        )

    @property
    def name(self) -> str:
        return DELETED_PREFIX + self.point

    @property
    def purge_time(self) -> datetime:
        return datetime.fromisoformat(self.purge_after)

    def expired(self, now: datetime | None = None) -> bool:
        """Whether the soft-delete window has ended (prune may now remove the point)."""
        return (now or utc_now()) >= self.purge_time

    def seal(self, keys: VaultKeys, vault_id: bytes) -> bytearray:
        payload = json.dumps(asdict(self), sort_keys=True).encode("utf-8")
        return seal_object(MAGIC_DELETED, keys.point_key, vault_id, payload)


def open_tombstone(
    keys: VaultKeys, vault_id: bytes, name: str, stored: bytes | bytearray
) -> Tombstone:
    """Authenticate and parse ``deleted/<point id>``; its content must name that point."""
    point_id = name[len(DELETED_PREFIX) :] if name.startswith(DELETED_PREFIX) else ""
    if not _POINT_ID.match(point_id):
        raise IntegrityError(f"{name}: not a tombstone name", name=name)
    plain = open_object(MAGIC_DELETED, keys.point_key, vault_id, stored, name=name)
    try:
        doc = json.loads(plain)
        stone = Tombstone(**{k: str(doc[k]) for k in Tombstone.__dataclass_fields__})
        stone.purge_time  # noqa: B018  (validates the date)
        datetime.fromisoformat(stone.deleted_at)
    except (ValueError, TypeError, KeyError) as exc:
        raise IntegrityError(f"{name}: malformed tombstone ({exc})", name=name) from None
    if stone.point != point_id:
        raise IntegrityError(
            f"{name}: tombstone names point {stone.point[:12]}, not the point of its name "
            "(replayed under another name)",
            name=name,
        )
    return stone
