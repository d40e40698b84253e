"""Retention policies: which recovery points to keep (grandfather-father-son), and why.

Points are grouped by (kind, source); each group is judged on its own.  Within a group,
newest first:

- ``last N`` keeps the N newest points;
- ``hourly/daily/weekly/monthly/yearly N`` keeps the newest point of each of the N most recent
  hours/days/ISO weeks/months/years that have a point (calendar periods in UTC);
- ``within D`` keeps every point at most D older than the group's newest point (relative to
  the newest point, not to now, so a source that stopped backing up keeps its last points).

A point may be kept by several rules; every one is reported.  The same semantics as restic's
``forget``, so its documentation applies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import field
from datetime import datetime, timedelta

from strongroom.records import dataclass
from strongroom.vault.points import RecoveryPoint

_DURATION = re.compile(r"(\d+)([ymwdh])")
_UNIT_DAYS = {"y": 365.0, "m": 30.0, "w": 7.0, "d": 1.0, "h": 1 / 24}


def parse_duration(text: str) -> timedelta:
    """``1y2m3w4d5h`` style: y = 365 days, m = 30 days (a month), w = 7 days, d, h."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(
            f"{text!r} is not a duration such as 7d, 12h, 2w, 6m or 1y2m (y, m, w, d, h)"
        )
    return timedelta(days=sum(int(n) * _UNIT_DAYS[u] for n, u in parts))


@dataclass(frozen=True)
class KeepPolicy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: timedelta | None = None

    def is_empty(self) -> bool:
        counts = (self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly)
        return not any(counts) and self.within is None

    def describe(self) -> str:
        parts = [
            f"{name} {n}"
            for name, n in (
                ("last", self.last),
                ("hourly", self.hourly),
                ("daily", self.daily),
                ("weekly", self.weekly),
                ("monthly", self.monthly),
                ("yearly", self.yearly),
            )
            if n
        ]
        if self.within is not None:
            parts.append(f"within {_days_text(self.within)}")
        return ", ".join(parts) or "nothing"


@dataclass
class Decision:
    point: RecoveryPoint
    keep: bool = False
    reasons: list[str] = field(default_factory=list)


def _days_text(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:g}d" if hours >= 24 else f"{hours:g}h"


def _week(t: datetime) -> str:
    year, week, _ = t.isocalendar()
    return f"{year}-W{week:02d}"


_BUCKETS: list[tuple[str, Callable[[datetime], str]]] = [
    ("hourly", lambda t: t.strftime("%Y-%m-%d %Hh")),
    ("daily", lambda t: t.strftime("%Y-%m-%d")),
    ("weekly", _week),
    ("monthly", lambda t: t.strftime("%Y-%m")),
    ("yearly", lambda t: t.strftime("%Y")),
]


def group_key(point: RecoveryPoint) -> tuple[str, str]:
    return point.manifest.kind, point.manifest.source


def group_points(points: Iterable[RecoveryPoint]) -> dict[tuple[str, str], list[RecoveryPoint]]:
    groups: dict[tuple[str, str], list[RecoveryPoint]] = {}
    for p in points:
        groups.setdefault(group_key(p), []).append(p)
    return groups


def select(points: Iterable[RecoveryPoint], policy: KeepPolicy) -> list[Decision]:
    """Decisions for one group, newest first."""
    decisions = [
        Decision(p)
        for p in sorted(points, key=lambda p: (p.manifest.timestamp, p.point_id), reverse=True)
    ]
    why = keep_reasons([d.point.manifest.timestamp for d in decisions], policy)
    for d, reasons in zip(decisions, why, strict=True):
        d.reasons, d.keep = reasons, bool(reasons)
    return decisions


def keep_reasons(times: Sequence[datetime], policy: KeepPolicy) -> list[list[str]]:
    """Why each point of one group is kept (no reason: forgotten), given the points' times
    newest first.  The one planner: ``forget`` and the server's retention (which knows only
    the points' storage times) both call it."""
    decisions: list[list[str]] = [[] for _ in times]
    if not decisions:
        return decisions
    for reasons in decisions[: policy.last]:
        reasons.append(f"last {policy.last}")
    for rule, bucket in _BUCKETS:
        _apply_bucket(times, decisions, rule, getattr(policy, rule), bucket)
    if policy.within is not None:
        for t, reasons in zip(times, decisions, strict=True):
            if times[0] - t <= policy.within:
                reasons.append(f"within {_days_text(policy.within)} of the newest")
    return decisions


def _apply_bucket(
    times: Sequence[datetime],
    decisions: list[list[str]],
    rule: str,
    count: int,
    bucket: Callable[[datetime], str],
) -> None:
    last: str | None = None
    kept = 0
    for t, reasons in zip(times, decisions, strict=True):
        if kept >= count:
            return
        key = bucket(t)
        if key != last:
            reasons.append(f"{rule} {key}")
            last = key
            kept += 1
