"""Calendar schedule expressions: parsing, and next_after against a brute-force minute scan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.server.control.calendar import ScheduleError, parse_schedule

T0 = datetime(2024, 2, 27, 22, 58, 30, tzinfo=UTC)  # a Tuesday, before a leap day


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("mon..fri 02:00", T0, datetime(2024, 2, 28, 2, 0, tzinfo=UTC)),
        ("sat,sun 02:00", T0, datetime(2024, 3, 2, 2, 0, tzinfo=UTC)),
        ("*-*-* 00/4:00", T0, datetime(2024, 2, 28, 0, 0, tzinfo=UTC)),
        ("*:0/5", T0, datetime(2024, 2, 27, 23, 0, tzinfo=UTC)),
        ("*/5", T0, datetime(2024, 2, 27, 23, 0, tzinfo=UTC)),
        ("daily", T0, datetime(2024, 2, 28, 0, 0, tzinfo=UTC)),
        ("hourly", T0, datetime(2024, 2, 27, 23, 0, tzinfo=UTC)),
        ("minutely", T0, datetime(2024, 2, 27, 22, 59, tzinfo=UTC)),
        ("monthly", T0, datetime(2024, 3, 1, 0, 0, tzinfo=UTC)),
        ("*-02-29 12:00", T0, datetime(2024, 2, 29, 12, 0, tzinfo=UTC)),
        ("*-02-29 12:00", datetime(2024, 3, 1, tzinfo=UTC), datetime(2028, 2, 29, 12, tzinfo=UTC)),
        ("2025-01-01 00:00:00", T0, datetime(2025, 1, 1, tzinfo=UTC)),
        ("Mon *-*-* 00:00 UTC", T0, datetime(2024, 3, 4, tzinfo=UTC)),
        (
            "*-*-* 22:58",
            datetime(2024, 2, 27, 22, 58, tzinfo=UTC),
            datetime(2024, 2, 28, 22, 58, tzinfo=UTC),
        ),
    ],
)
def test_next_after_examples(expr: str, after: datetime, expected: datetime) -> None:
    assert parse_schedule(expr).next_after(after) == expected


def test_a_schedule_that_never_matches_has_no_next() -> None:
    assert parse_schedule("*-02-30 00:00").next_after(T0) is None
    assert parse_schedule("2020-01-01 00:00").next_after(T0) is None


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "noon",
        "mon..fri 25:00",
        "*:60",
        "*-13-01",
        "12:00:30",
        "a b c d",
        "1..x",
        "5..2:00",
        "*:*/0",
        "02:00 mon",
    ],
)
def test_bad_expressions_are_one_line_errors(bad: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(bad)
    assert "\n" not in str(info.value)


def _list(values: list[str]) -> str:
    return ",".join(values)


def _component(low: int, high: int) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    single = value.map(str)
    rng = st.tuples(value, value).map(lambda p: f"{min(p)}..{max(p)}")
    step = st.tuples(value, st.integers(1, high - low + 1)).map(lambda p: f"{p[0]}/{p[1]}")
    star_step = st.integers(1, high - low + 1).map(lambda s: f"*/{s}")
    return st.one_of(
        st.just("*"),
        star_step,
        st.lists(st.one_of(single, rng, step), min_size=1, max_size=3).map(_list),
    )


_WEEKDAYS = st.one_of(
    st.just(""),
    st.lists(
        st.sampled_from(
            ["mon", "tue", "wed", "thu", "fri", "sat", "sun", "mon..fri", "sat..sun", "tue..thu"]
        ),
        min_size=1,
        max_size=3,
    ).map(_list),
)
_DAYS = st.one_of(st.just("*"), _component(1, 31))
_EXPRESSIONS = st.builds(
    lambda wd, day, hour, minute: f"{wd} *-*-{day} {hour}:{minute}".strip(),
    _WEEKDAYS,
    st.one_of(st.just("*"), st.just("*"), _DAYS),
    _component(0, 23),
    _component(0, 59),
)
_TIMES = st.datetimes(
    min_value=datetime(2023, 12, 25), max_value=datetime(2025, 3, 5), timezones=st.just(UTC)
)
_SCAN = timedelta(days=3)


@settings(max_examples=80, deadline=None)
@given(_EXPRESSIONS, _TIMES)
def test_next_after_is_the_first_match_of_a_minute_scan(expr: str, after: datetime) -> None:
    schedule = parse_schedule(expr)
    found = schedule.next_after(after)
    t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    end = after + _SCAN
    while t <= end and not schedule.matches(t):
        t += timedelta(minutes=1)
    if t <= end:  # the scan found the first match: no match is skipped
        assert found == t
    else:
        assert found is None or found > end
    if found is not None:
        assert found > after
        assert schedule.matches(found)
