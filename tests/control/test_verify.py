"""Scheduled verification in process with a manual clock: a rotating subset that still
reaches every object within ``verify_days``, damage found and cleared."""

from __future__ import annotations

import os
from pathlib import Path

import blake3

from strongroom.server.catalog import AuditEntry, Catalog
from strongroom.server.control.plane import ControlPlane
from strongroom.server.control.watch import watch_addresses
from strongroom.server.run import init_catalog
from strongroom.server.vaults import VaultRegistry
from tests.control.postgres import new_database, postgres_cluster
from tests.control.test_plane import T0, ManualClock

DAY = 86400.0


def _objects(root: Path, count: int) -> list[str]:
    names = []
    for _ in range(count):
        data = os.urandom(200)
        digest = blake3.blake3(data).hexdigest()
        name = f"data/{digest[:2]}/{digest}"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        names.append(name)
    return names


def _checked(catalog: Catalog) -> dict[str, float | None]:
    with catalog.read() as db:
        rows = db.execute("SELECT name, checked FROM object_checks").fetchall()
    return {str(n): c for n, c in rows}


def test_every_object_within_the_days_a_share_per_run(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "data", create=True)
    root = tmp_path / "data" / "vaults" / "v"
    catalog.add_vault("v", str(root))
    names = _objects(root, 70)
    clock = ManualClock()
    plane = ControlPlane(catalog, VaultRegistry(catalog), clock)
    plane.verifier.background = False
    plane.verifier.set_schedule("v", "daily", 7)
    last: dict[str, float] = {}
    gaps: list[float] = []
    per_run: list[int] = []
    for day in range(1, 22):
        clock.at = T0 + day * DAY
        if day == 8:
            names += _objects(root, 14)  # new objects join the rotation
        plane.tick()
        done = {n: c for n, c in _checked(catalog).items() if c is not None}
        per_run.append(sum(1 for n, c in done.items() if last.get(n) != c))
        for n, c in done.items():
            if n in last and last[n] != c:
                gaps.append(c - last[n])
            last[n] = c
    assert set(last) == set(names)
    assert max(gaps) <= 7 * DAY
    assert max(per_run) <= 70 // 7 + 14  # a share, not the whole vault, per run
    jobs = [j for j in plane.jobs.history("vault:v", 100) if j.kind == "verify"]
    assert len(jobs) == 21 and {j.state for j in jobs} == {"succeeded"}


def test_damage_raises_an_alert_and_a_clean_run_clears_it(tmp_path: Path) -> None:
    _damage_and_repair(Catalog(tmp_path / "data", create=True), tmp_path)


def test_verify_and_address_watch_on_postgres(tmp_path: Path) -> None:
    """The same SQL on PostgreSQL: a verify run, and the audit log read for new addresses."""
    with postgres_cluster() as base:
        init_catalog(tmp_path / "data", new_database(base, "upkeep"))
        catalog = Catalog(tmp_path / "data")
        try:
            _damage_and_repair(catalog, tmp_path)
            assert watch_addresses(catalog, T0) == 0  # the first pass: history, no notices
            for address in ("10.0.0.1", "10.0.0.2", "10.0.0.2"):
                row = AuditEntry(1.0, "tok1", "admin", address, "GET", None, "x", None, 200, "")
                catalog.audit(row)
            assert watch_addresses(catalog, T0) == 1  # 10.0.0.2 after 10.0.0.1: one notice
            assert watch_addresses(catalog, T0) == 0  # once per pair
        finally:
            catalog.close()


def _damage_and_repair(catalog: Catalog, tmp_path: Path) -> None:
    root = tmp_path / "data" / "vaults" / "v"
    catalog.add_vault("v", str(root))
    names = _objects(root, 5)
    plane = ControlPlane(catalog, VaultRegistry(catalog), clock := ManualClock())
    plane.verifier.background = False
    plane.verifier.set_schedule("v", "daily", 1)  # every object every run
    bad = root / names[0]
    good = bad.read_bytes()
    bad.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    clock.at = T0 + DAY
    plane.tick()
    job = plane.jobs.history("vault:v", 1)[0]
    assert job.state == "failed" and names[0].rpartition("/")[2] in (job.reason or "")
    assert plane.alerts.active() == {"vault:v": ["verify-error"]}
    bad.write_bytes(good)
    clock.at += DAY
    plane.tick()
    assert plane.jobs.history("vault:v", 1)[0].state == "succeeded"
    assert plane.alerts.active() == {}
