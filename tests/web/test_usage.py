"""Usage samples and the date of full, the SVG charts, the shared retention planner and the
edits of policies and items: in process, over a real catalog and a real local vault."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.server.auth import ApiError, new_token
from strongroom.server.catalog import Catalog
from strongroom.server.control import edits, retention
from strongroom.server.control.plane import ControlPlane
from strongroom.server.control.store import Item, Policy
from strongroom.server.vaults import VaultRegistry
from strongroom.server.web import charts, overview, usage
from strongroom.server.web.usage import Sample
from strongroom.vault.retention import KeepPolicy
from tests.control.postgres import new_database, postgres_cluster
from tests.control.test_plane import T0, ManualClock

DAY = 86400.0


def test_the_date_of_full_is_a_least_squares_line_through_the_samples() -> None:
    t0 = 1_700_000_000.0
    # 10 GB a day with noise around the line, capacity 1000 GB: full 100 days after t0
    noise = [0, 3, -3, 2, -2, 0]
    found = [
        Sample(t0 + i * DAY, int((i * 10 + n * 0.1) * 1e9), 1000 * 10**9)
        for i, n in enumerate(noise)
    ]
    full = usage.full_at(found)
    assert full is not None and abs(full - (t0 + 100 * DAY)) < DAY
    flat = [Sample(t0 + i * DAY, 5, 100) for i in range(3)]
    assert usage.full_at(flat) is None  # not growing: never full
    assert usage.full_at(found[:1]) is None  # one sample draws no line
    assert usage.full_at([Sample(t0, 1, None), Sample(t0 + DAY, 2, None)]) is None


def test_sizes_parse_with_binary_units() -> None:
    assert usage.parse_size("500G") == 500 * 2**30
    assert usage.parse_size("1.5 TiB") == int(1.5 * 2**40)
    assert usage.parse_size("2048") == 2048
    with pytest.raises(ApiError, match="not a size"):
        usage.parse_size("lots")
    with pytest.raises(ApiError, match="too large"):
        usage.parse_size("9999999P")


@given(st.integers(min_value=0, max_value=2**20), st.sampled_from(["", "K", "M", "G", "T"]))
@settings(max_examples=50)
def test_any_whole_size_parses_back(n: int, unit: str) -> None:
    factor = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[unit]
    assert usage.parse_size(f"{n}{unit}") == n * factor


def _plane(tmp_path: Path, url: str | None = None) -> tuple[ControlPlane, ManualClock]:
    catalog = Catalog(tmp_path / "data", create=True, url=url)
    catalog.add_vault("v", str(tmp_path / "vault"))
    (tmp_path / "vault" / "data").mkdir(parents=True)
    clock = ManualClock()
    plane = ControlPlane(catalog, VaultRegistry(catalog), clock)
    for machine in ("m1", "m2"):
        made = new_token("backup", sources=[f"agent:{machine}"])
        catalog.add_token(made.row)
        plane.defs.add_machine(machine, made.row.id, T0)
    plane.defs.add_policy(Policy("p", "v", "02:00", created=T0))
    plane.protect(Item("site", "files", "m1", ["/srv"], policy="p", created=T0))
    return plane, clock


def test_the_sampler_measures_a_local_vault_and_samples_again_after_a_backup(
    tmp_path: Path,
) -> None:
    plane, _ = _plane(tmp_path)
    catalog = plane.catalog
    (tmp_path / "vault" / "data" / "pack1").write_bytes(b"x" * 5000)
    sampler = usage.Sampler(catalog, plane.registry)
    now = T0 + 10 * DAY
    sampler.pass_(now)
    first = usage.samples(catalog, "v")
    assert len(first) == 1 and first[0].used == 5000
    fs = os.statvfs(tmp_path / "vault")
    free = fs.f_bavail * fs.f_frsize
    assert first[0].capacity is not None and abs(first[0].capacity - (5000 + free)) < 2**24
    assert sampler.due(now + 60) == []  # nothing new: the next one in an hour
    with catalog.tx() as db:  # a backup of an item stored in v finished
        job = plane.jobs.enqueue(db, "site", "backup", T0, T0)
        db.execute("UPDATE jobs SET state = 'succeeded', finished = ? WHERE id = ?", (T0, job))
    assert sampler.due(now + 60) == ["v"]
    assert sampler.due(now + 120) == []
    assert sampler.due(now + usage.INTERVAL_S) == ["v"]
    usage.set_quota(catalog, "v", 10**6)  # a quota is the capacity
    assert usage.measure(catalog, plane.registry, "v", now).capacity == 10**6


def test_the_overview_tells_full_reduction_and_never_verified(tmp_path: Path) -> None:
    plane, _ = _plane(tmp_path)
    for i in range(3):
        usage.record(plane.catalog, "v", Sample(T0 + i * DAY, (i + 1) * 10**9, 10 * 10**9))
    with plane.catalog.tx() as db:
        job = plane.jobs.enqueue(db, "site", "backup", T0, T0)
        db.execute(
            "UPDATE jobs SET state = 'succeeded', finished = ?, bytes_read = 3000,"
            " bytes_added = 1000 WHERE id = ?",
            (T0, job),
        )
    (view,) = overview.views(plane.catalog, plane.registry)
    assert view.full_at is not None and abs(view.full_at - (T0 + 9 * DAY)) < 1
    html = overview.sections([view])
    assert "3.0x" in html and "never verified" in html
    assert html.count("<title>") == 6  # used and capacity, three samples each
    assert "Used, " in html and "<caption>Usage samples of vault v</caption>" in html


def test_charts_carry_their_numbers_as_titles() -> None:
    svg = charts.line_chart(
        "growth", [charts.Series("Used", "c-used", [(0.0, 1.0), (1.0, 3.0)])], str, str
    )
    assert svg.count("<title>") == 2 and "Used, 1.0: 3.0" in svg and 'role="img"' in svg
    assert charts.line_chart("empty", [], str, str) == ""


def test_the_server_plans_retention_with_forgets_own_reasons() -> None:
    start = datetime(2026, 1, 5, 10, tzinfo=UTC)
    points = [(f"p{i}", (start + timedelta(hours=12 * i)).timestamp()) for i in range(6)]
    plan = retention.plan(points, KeepPolicy(last=1, daily=2))
    assert [pid for pid, _, _ in plan] == [f"p{i}" for i in range(5, -1, -1)]
    why = {pid: reasons for pid, _, reasons in plan}
    assert why["p5"] == ["last 1", "daily 2026-01-07"]
    assert why["p3"] == ["daily 2026-01-06"]
    assert why["p4"] == [] and why["p0"] == []
    policy = Policy("p", "v", "02:00", keep_last=1, keep_daily=2)
    assert retention.to_forget(points, policy) == ["p4", "p2", "p1", "p0"]


def test_editing_a_policy_moves_next_runs_and_an_item_rescopes_its_machines(
    tmp_path: Path,
) -> None:
    plane, clock = _plane(tmp_path)
    before = plane.defs.item("site")
    assert before is not None and before.next_run is not None
    edits.update_policy(plane.catalog, Policy("p", "v", "hourly", keep_daily=7), clock.now())
    after = plane.defs.item("site")
    assert after is not None and after.next_run is not None and after.next_run < before.next_run
    policy = plane.defs.policy("p")
    assert policy is not None and policy.keep_daily == 7 and policy.created == T0
    with pytest.raises(ApiError, match="no policy"):
        edits.update_policy(plane.catalog, Policy("nope", "v", "hourly"), clock.now())

    plane.defs.add_policy(Policy("weekly", "v", "sun 03:00", created=T0))
    edits.update_item(plane.catalog, "site", "m2", ["/srv", "/etc"], ["*.tmp"], "weekly", T0)
    moved = plane.defs.item("site")
    assert moved is not None and (moved.machine, moved.policy) == ("m2", "weekly")
    assert moved.targets == ["/srv", "/etc"] and moved.source == "site"
    tokens = {m["name"]: m["token"] for m in plane.defs.machines()}
    by_id = {t.id: t.sources for t in plane.catalog.tokens()}
    assert "site" in by_id[str(tokens["m2"])] and "site" not in by_id[str(tokens["m1"])]
    with pytest.raises(ApiError, match="no machine"):
        edits.update_item(plane.catalog, "site", "m9", ["/srv"], [], "weekly", T0)
    with pytest.raises(ApiError, match="at least one path"):
        edits.update_item(plane.catalog, "site", "m1", [], [], "weekly", T0)


def test_samples_overview_and_edits_on_a_postgresql_catalog(tmp_path: Path) -> None:
    with postgres_cluster() as base:
        plane, clock = _plane(tmp_path, new_database(base, "web"))
        try:
            catalog = plane.catalog
            (tmp_path / "vault" / "data" / "pack1").write_bytes(b"x" * 700)
            sampler = usage.Sampler(catalog, plane.registry)
            sampler.pass_(T0)
            usage.record(catalog, "v", Sample(T0 + DAY, 1400, 2800))
            with catalog.tx() as db:
                job = plane.jobs.enqueue(db, "site", "backup", T0, T0)
                db.execute(
                    "UPDATE jobs SET state = 'succeeded', finished = ?, bytes_read = 10,"
                    " bytes_added = 5 WHERE id = ?",
                    (T0, job),
                )
            assert sampler.due(T0 + DAY + 60) == ["v"]
            (view,) = overview.views(catalog, plane.registry)
            assert [s.used for s in view.samples] == [700, 1400]
            assert view.full_at is not None and abs(view.full_at - (T0 + 3 * DAY)) < 1
            assert (view.read, view.added, view.coverage.listed) == (10, 5, None)
            edits.update_policy(catalog, Policy("p", "v", "hourly", keep_last=2), clock.now())
            edits.update_item(catalog, "site", "m2", ["/a"], [], "p", clock.now())
            moved = plane.defs.item("site")
            assert moved is not None and moved.machine == "m2"
        finally:
            plane.catalog.close()
