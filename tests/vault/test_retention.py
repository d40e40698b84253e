"""Grandfather-father-son selection: which points each rule keeps, and the reasons given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from strongroom.vault import PointManifest, RecoveryPoint
from strongroom.vault.retention import KeepPolicy, group_points, parse_duration, select

BASE = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)


def point(when: datetime, n: int, source: str = "web1", kind: str = "files") -> RecoveryPoint:
    manifest = PointManifest(kind=kind, source=source, roots=[], time=when.isoformat())
    return RecoveryPoint(f"{n:064x}", manifest)


def daily(days: int) -> list[RecoveryPoint]:
    """One point a day at 23:30, newest first: BASE, BASE - 1 day, ..."""
    return [point(BASE - timedelta(days=i), i) for i in range(days)]


def kept(policy: KeepPolicy, points: list[RecoveryPoint]) -> dict[int, list[str]]:
    return {int(d.point.point_id, 16): d.reasons for d in select(points, policy) if d.keep}


def test_keep_last() -> None:
    assert set(kept(KeepPolicy(last=3), daily(10))) == {0, 1, 2}


def test_daily_keeps_newest_of_each_day() -> None:
    points = [*daily(5), point(BASE - timedelta(hours=2), 100)]  # a second point on day 0
    result = kept(KeepPolicy(daily=3), points)
    assert set(result) == {0, 1, 2}
    assert result[0] == ["daily 2026-03-31"]


def test_weekly_monthly_yearly_over_two_years() -> None:
    points = daily(800)
    result = kept(KeepPolicy(weekly=4, monthly=3, yearly=3), points)
    weeks = [r for r in result.values() if any(x.startswith("weekly") for x in r)]
    assert len(weeks) == 4
    months = sorted(x for r in result.values() for x in r if x.startswith("monthly"))
    assert months == ["monthly 2026-01", "monthly 2026-02", "monthly 2026-03"]
    years = sorted(x for r in result.values() for x in r if x.startswith("yearly"))
    assert years == ["yearly 2024", "yearly 2025", "yearly 2026"]
    # The newest point of a month is its last day: 2026-02-28 for February.
    feb = next(n for n, r in result.items() if "monthly 2026-02" in r)
    assert points[feb].manifest.time.startswith("2026-02-28")


def test_hourly_and_reasons_accumulate() -> None:
    points = [point(BASE - timedelta(minutes=20 * i), i) for i in range(12)]
    result = kept(KeepPolicy(last=1, hourly=2), points)
    assert result[0] == ["last 1", "hourly 2026-03-31 23h"]
    assert set(result) == {0, 2}  # 23:30 (last) and 22:50 (newest of 22h)


def test_within_is_relative_to_the_newest_point() -> None:
    old = [point(BASE - timedelta(days=400 + i), i) for i in range(10)]
    result = kept(KeepPolicy(within=timedelta(days=3)), old)
    assert set(result) == {0, 1, 2, 3}


def test_nothing_kept_without_rules_and_groups_are_separate() -> None:
    mixed = [*daily(3), point(BASE, 50, source="db1"), point(BASE, 60, kind="vm")]
    groups = group_points(mixed)
    assert set(groups) == {("files", "web1"), ("files", "db1"), ("vm", "web1")}
    assert not kept(KeepPolicy(), groups["files", "web1"])
    assert KeepPolicy().is_empty() and not KeepPolicy(yearly=1).is_empty()


@pytest.mark.parametrize(
    ("text", "days"),
    [("7d", 7), ("12h", 0.5), ("2w", 14), ("6m", 180), ("1y2m3d", 365 + 60 + 3)],
)
def test_parse_duration(text: str, days: float) -> None:
    assert parse_duration(text) == timedelta(days=days)


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "1d-2h", "7d 3"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
