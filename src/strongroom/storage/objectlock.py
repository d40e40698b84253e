"""Storage-level immutability: the ``?object-lock-days=N`` option of an ``s3://`` location.

``s3://BUCKET/PREFIX?object-lock-days=30&object-lock-mode=compliance`` writes every pack,
index object and recovery point with S3 Object Lock retention until 30 days after its upload,
so not even the storage's own credentials can delete or overwrite those versions before then
(COMPLIANCE: nobody; GOVERNANCE: only a principal with ``s3:BypassGovernanceRetention``).
Other objects (config, key slots, tombstones, locks) are written plainly: locks are rewritten
and deleted all the time, and tombstones must stay removable by ``undelete``.

The option lives in the location string, so it works the same for a vault opened directly and
for one a server serves (``strongroom server vault add NAME LOCATION --object-lock-days N``
stores it with the location).  See ``docs/server.md``, "Storage-level immutability".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import parse_qsl

from strongroom.errors import BackendConfigError
from strongroom.records import dataclass

LOCKED_PREFIXES = ("data/", "index/", "points/")
"""The content-addressed objects that get retention: written once, never replaced."""

MODES = ("compliance", "governance")
_DAYS = "object-lock-days"
_MODE = "object-lock-mode"
MAX_DAYS = 36500


@dataclass(frozen=True)
class ObjectLock:
    days: int
    mode: Literal["COMPLIANCE", "GOVERNANCE"] = "COMPLIANCE"

    def retain_until(self, now: datetime | None = None) -> datetime:
        return (now or datetime.now(UTC)) + timedelta(days=self.days)

    def query(self) -> str:
        return f"?{_DAYS}={self.days}&{_MODE}={self.mode.lower()}"


def is_locked_kind(name: str) -> bool:
    return name.startswith(LOCKED_PREFIXES)


def make_lock(days: int, mode: str = "compliance") -> ObjectLock:
    """An :class:`ObjectLock`; BackendConfigError for a bad number of days or mode."""
    if not 1 <= days <= MAX_DAYS:
        raise BackendConfigError(f"invalid {_DAYS} {days}: use 1 to {MAX_DAYS}")
    if mode.lower() not in MODES:
        raise BackendConfigError(f"invalid {_MODE} {mode!r}: use compliance or governance")
    return ObjectLock(days, "COMPLIANCE" if mode.lower() == "compliance" else "GOVERNANCE")


def split_location(location: str) -> tuple[str, ObjectLock | None]:
    """``(location without its query, the object lock it asks for or None)``."""
    base, sep, query = location.partition("?")
    if not sep:
        return location, None
    fields = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    unknown = set(fields) - {_DAYS, _MODE}
    if unknown or _DAYS not in fields:
        raise BackendConfigError(
            f"invalid location options in {location!r}: only {_DAYS}=N[&{_MODE}=compliance|"
            "governance] is known"
        )
    days_text = fields[_DAYS]
    if not days_text.isdigit():
        raise BackendConfigError(f"invalid {_DAYS} {days_text!r}: a whole number of days")
    return base, make_lock(int(days_text), fields.get(_MODE, "compliance"))
