"""Calendar schedule expressions, as systemd's ``OnCalendar=`` and Proxmox's schedules.

``[WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:00]]`` in UTC, each field a comma list of
``*``, ``N``, ``N..M``, ``N/STEP``, ``N..M/STEP`` or ``*/STEP`` (weekdays: ``mon..fri``,
``sat,sun``).  Examples: ``mon..fri 02:00``, ``*-*-* 00/4:00`` (every four hours),
``*:0/5`` (every five minutes), ``*-*-1 03:30`` (monthly), and the shorthands ``minutely``,
``hourly``, ``daily``, ``weekly``, ``monthly``, ``quarterly``, ``semiannually``, ``yearly``.
A lone field without ``:`` is the minute, as in Proxmox (``*/5``, ``0/15``).

The resolution is a minute: seconds may be given only as 0.  Times are UTC, so a schedule
means the same on every server and across daylight saving changes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from strongroom.errors import StrongroomError
from strongroom.records import dataclass

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SHORTHANDS = {
    "minutely": "*-*-* *:*",
    "hourly": "*-*-* *:00",
    "daily": "*-*-* 00:00",
    "weekly": "mon *-*-* 00:00",
    "monthly": "*-*-01 00:00",
    "quarterly": "*-01,04,07,10-01 00:00",
    "semiannually": "*-01,07-01 00:00",
    "yearly": "*-01-01 00:00",
    "annually": "*-01-01 00:00",
}
_MAX_YEAR = 9999
_SEARCH_YEARS = 30

_ITEM = re.compile(r"^(\*|\d+)(?:\.\.(\d+))?(?:/(\d+))?$")


class ScheduleError(StrongroomError):
    """A calendar expression that does not parse."""


@dataclass(frozen=True, slots=True)
class Field:
    """The values one field matches: a frozenset for bounded fields; years keep their rules."""

    values: frozenset[int]

    def __contains__(self, value: int) -> bool:
        return value in self.values

    def next_at_or_after(self, value: int) -> int | None:
        later = [v for v in self.values if v >= value]
        return min(later) if later else None


def _field(text: str, low: int, high: int, what: str, names: tuple[str, ...] = ()) -> Field:
    values: set[int] = set()
    for part in text.split(","):
        m = _ITEM.match(_names_to_numbers(part.lower(), names, low))
        if m is None:
            raise ScheduleError(f"invalid {what} {part!r}")
        start_text, end_text, step_text = m.groups()
        if start_text == "*":
            if end_text is not None:
                raise ScheduleError(f"invalid {what} {part!r}: '*..N' is not a range")
            start, end = low, high
        else:
            start = int(start_text)
            end = int(end_text) if end_text is not None else (high if step_text else start)
        step = int(step_text) if step_text is not None else 1
        if not (low <= start <= high and low <= end <= high) or start > end or step < 1:
            raise ScheduleError(f"{what} {part!r} out of range {low}..{high}")
        values.update(range(start, end + 1, step))
    return Field(frozenset(values))


def _names_to_numbers(part: str, names: tuple[str, ...], low: int) -> str:
    if not names:
        return part
    out = part
    for i, name in enumerate(names):
        out = re.sub(rf"\b{name}[a-z]*", str(low + i), out)
    return out


@dataclass(frozen=True, slots=True)
class Schedule:
    text: str
    weekdays: Field  # 0 = Monday
    years: Field
    months: Field
    days: Field
    hours: Field
    minutes: Field

    def matches(self, t: datetime) -> bool:
        t = _utc(t)
        return (
            t.second == 0
            and t.microsecond == 0
            and t.year in self.years
            and t.month in self.months
            and t.day in self.days
            and t.weekday() in self.weekdays
            and t.hour in self.hours
            and t.minute in self.minutes
        )

    def next_after(self, after: datetime) -> datetime | None:
        """The first time strictly after ``after`` that matches (None: never again)."""
        t = _utc(after).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t.year + _SEARCH_YEARS
        while t.year <= limit:
            if t.year not in self.years:
                y = self.years.next_at_or_after(t.year)
                if y is None or y > limit:
                    return None
                t = datetime(y, 1, 1, tzinfo=UTC)
            elif t.month not in self.months:
                m = self.months.next_at_or_after(t.month)
                t = _next_year(t) if m is None else datetime(t.year, m, 1, tzinfo=UTC)
            elif t.day not in self.days or t.weekday() not in self.weekdays:
                t = datetime(t.year, t.month, t.day, tzinfo=UTC) + timedelta(days=1)
            elif t.hour not in self.hours:
                h = self.hours.next_at_or_after(t.hour)
                day = datetime(t.year, t.month, t.day, tzinfo=UTC)
                t = day + (timedelta(days=1) if h is None else timedelta(hours=h))
            elif t.minute not in self.minutes:
                m = self.minutes.next_at_or_after(t.minute)
                hour = t.replace(minute=0)
                t = hour + (timedelta(hours=1) if m is None else timedelta(minutes=m))
            else:
                return t
        return None


def _next_year(t: datetime) -> datetime:
    return datetime(t.year + 1, 1, 1, tzinfo=UTC)


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def parse_schedule(text: str) -> Schedule:
    """Parse a calendar expression; a one-line :class:`ScheduleError` if it is not one."""
    original = text
    words = text.strip().lower().split()
    if words and words[-1] == "utc":
        words = words[:-1]
    if len(words) == 1 and words[0] in SHORTHANDS:
        words = SHORTHANDS[words[0]].split()
    if not words or len(words) > 3:
        raise ScheduleError(f"invalid schedule {original!r}: e.g. 'mon..fri 02:00' or '*:0/15'")
    weekday_text = words.pop(0) if words[0][0].isalpha() else "*"
    date_text = words.pop(0) if words and "-" in words[0] else "*-*-*"
    time_text = words.pop(0) if words else "00:00"
    if words:
        raise ScheduleError(f"invalid schedule {original!r}: fields out of order")
    if ":" not in time_text:
        time_text = "*:" + time_text  # Proxmox: a lone field is the minute
    try:
        years, months, days = _date(date_text, original)
        hours, minutes = _time(time_text, original)
        weekdays = _field(weekday_text, 0, 6, "weekday", WEEKDAYS)
    except ScheduleError as exc:
        raise ScheduleError(f"invalid schedule {original!r}: {exc}") from None
    return Schedule(original.strip(), weekdays, years, months, days, hours, minutes)


def _date(text: str, original: str) -> tuple[Field, Field, Field]:
    parts = text.split("-")
    if len(parts) == 2:
        parts = ["*", *parts]
    if len(parts) != 3:
        raise ScheduleError(f"invalid date {text!r}: [YEAR-]MONTH-DAY")
    return (
        _field(parts[0], 1970, _MAX_YEAR, "year"),
        _field(parts[1], 1, 12, "month"),
        _field(parts[2], 1, 31, "day"),
    )


def _time(text: str, original: str) -> tuple[Field, Field]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ScheduleError(f"invalid time {text!r}: HOUR:MINUTE")
    if len(parts) == 3 and _field(parts[2], 0, 59, "second").values != {0}:
        raise ScheduleError("seconds other than 0 are not supported")
    return _field(parts[0], 0, 23, "hour"), _field(parts[1], 0, 59, "minute")
