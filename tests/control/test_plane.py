"""The control plane in process: exactly-once scheduling, retention rules, tombstone grants,
and what an enrol token may do."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from strongroom.server.auth import ApiError, new_token
from strongroom.server.catalog import Catalog
from strongroom.server.control.clock import Clock
from strongroom.server.control.plane import ControlPlane
from strongroom.server.control.retention import to_forget
from strongroom.server.control.store import Item, Policy
from strongroom.server.scoping import check_sources
from strongroom.server.vaults import VaultRegistry

T0 = datetime(2025, 3, 3, 10, 0, 30, tzinfo=UTC).timestamp()


@dataclass
class ManualClock(Clock):
    at: float = T0

    def now(self) -> float:
        return self.at


def _plane(tmp_path: Path, schedule: str = "*:*") -> tuple[ControlPlane, ManualClock, str]:
    catalog = Catalog(tmp_path / "data", create=True)
    catalog.add_vault("v", str(tmp_path / "data" / "vaults" / "v"))
    clock = ManualClock()
    plane = ControlPlane(catalog, VaultRegistry(catalog), clock)
    made = new_token("backup", sources=["agent:m1"])
    catalog.add_token(made.row)
    plane.defs.add_machine("m1", made.row.id, T0)
    plane.defs.add_policy(Policy("p", "v", schedule, grace=5, keep_last=1, created=T0))
    plane.protect(Item("site", "files", "m1", ["/srv"], policy="p", created=T0))
    return plane, clock, made.row.id


def test_each_scheduled_run_is_enqueued_once(tmp_path: Path) -> None:
    plane, clock, _ = _plane(tmp_path)
    clock.at = T0 + 40  # 10:01:10: the 10:01 run is due
    plane.tick()
    plane.tick()
    jobs = plane.jobs.history("site")
    assert [(j.kind, j.state, j.scheduled) for j in jobs] == [("backup", "queued", T0 + 30)]
    clock.at += 60  # the 10:02 run while 10:01's still waits: folded into it
    plane.tick()
    assert len(plane.jobs.history("site")) == 1
    assert any("skipped" in line["line"] for line in plane.jobs.lines(jobs[0].id))
    # the agent never came: overdue once the grace (5 minutes) has passed
    assert plane.items_view()[0]["health"] == "warning"
    clock.at = T0 + 30 + 5 * 60 + 1
    plane.tick()
    assert plane.items_view()[0]["health"] == "overdue"
    assert plane.alerts.active() == {"site": ["overdue"]}


def test_a_claimed_item_is_never_handed_out_twice(tmp_path: Path) -> None:
    plane, clock, _ = _plane(tmp_path)
    clock.at = T0 + 40
    plane.tick()
    first = plane.claim("m1")
    assert first is not None and first[1]["targets"] == ["/srv"]
    with pytest.raises(ApiError):  # one job of an item at a time
        plane.backup_now("site")
    assert plane.claim("m1") is None
    assert plane.claim("other") is None


def test_backup_tokens_write_only_granted_tombstones(tmp_path: Path) -> None:
    plane, _, token_id = _plane(tmp_path)
    token = plane.catalog.token(token_id)
    assert token is not None
    gateway = plane.registry.gateway("v", new_token("admin").row, create=True)
    if gateway is None:
        plane.registry.create("v")
    gateway = plane.registry.gateway("v", token)
    assert gateway is not None
    point = os.urandom(32).hex()
    with pytest.raises(ApiError) as refused:
        gateway.put(token, f"deleted/{point}", b"tombstone")
    assert refused.value.status == 403
    with plane.catalog.tx() as db:
        db.execute("INSERT INTO tombstone_grants VALUES ('v', ?, ?, 1)", (point, token_id))
    assert gateway.put(token, f"deleted/{point}", b"tombstone") is True
    with pytest.raises(ApiError):  # and still never deletes it
        gateway.delete(token, f"deleted/{point}")


def test_enrol_tokens_cannot_use_vaults(tmp_path: Path) -> None:
    plane, _, _ = _plane(tmp_path)
    enrol = new_token("enrol").row
    with pytest.raises(ApiError) as refused:
        plane.registry.gateway("v", enrol)
    assert refused.value.status == 403
    with pytest.raises(ApiError):
        check_sources("enrol", ["x"])


def _policy(**keep: int) -> Policy:
    return Policy("p", "v", "daily", **keep)  # type: ignore[arg-type]


def test_retention_rules() -> None:
    day = 86400.0
    midnight = datetime(2025, 3, 3, tzinfo=UTC).timestamp()
    points = [(f"p{i}", midnight + i * day / 4) for i in range(12)]  # four a day for three days
    assert to_forget(points, _policy()) == []
    assert set(to_forget(points, _policy(keep_last=3))) == {f"p{i}" for i in range(9)}
    kept_daily = set(p for p, _ in points) - set(to_forget(points, _policy(keep_daily=2)))
    assert kept_daily == {"p11", "p7"}  # the newest of each of the two newest days
    both = set(p for p, _ in points) - set(to_forget(points, _policy(keep_last=1, keep_daily=3)))
    assert both == {"p11", "p7", "p3"}
