"""The dashboard's per-point verify state and its dedup and compression factors: a real server
(uvicorn in this process), a real vault written through it by the CLI, the server's own verify
job re-hashing the objects, and a pack damaged on disk."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from strongroom.server import pointmeta
from strongroom.server.auth import new_token
from strongroom.server.catalog import AuditEntry, Catalog
from strongroom.server.control.clock import Clock
from strongroom.server.control.plane import ControlPlane
from strongroom.server.control.store import Item, Policy
from strongroom.server.run import init_catalog
from strongroom.server.web import overview, pages, points_pages, verifystate
from strongroom.server.web.users import Session
from tests.control.conftest import wait_for
from tests.control.postgres import new_database, postgres_cluster
from tests.server.conftest import InProcess, Runner, in_process

ADMIN = Session("alice", "admin", "csrf")


@dataclass
class Site:
    ip: InProcess
    plane: ControlPlane
    url: str
    root: Path
    """The vault's folder."""


@pytest.fixture
def site(tmp_path: Path, run: Runner) -> Iterator[Site]:
    """Vault ``v`` made through the server, and item ``site`` (source ``site``) stored in it."""
    data = tmp_path / "data"
    with in_process(data) as ip:
        url = f"http://127.0.0.1:{ip.port}/v"
        code, _, err = run(ip.tokens["admin"], "init", "--vault", url, "--kdf-memory", "1")
        assert code == 0, err
        catalog = ip.server.catalog
        plane = ControlPlane(catalog, ip.server.vaults, Clock())
        plane.verifier.background = False  # tick() runs a queued verify here
        made = new_token("backup", sources=["agent:m1"])
        catalog.add_token(made.row)
        now = time.time()
        plane.defs.add_machine("m1", made.row.id, now)
        plane.defs.add_policy(Policy("p", "v", "02:00", created=now))
        plane.protect(Item("site", "files", "m1", ["/srv"], policy="p", created=now))
        plane.verifier.set_schedule("v", "daily", 1)  # each run checks every object
        yield Site(ip, plane, url, data / "vaults" / "v")


def _backup(run: Runner, s: Site, src: Path) -> dict[str, Any]:
    token = s.ip.tokens["backup"]
    code, out, err = run(token, "backup", "files", str(src), "--vault", s.url, "--source", "site")
    assert code == 0, err
    code, out, err = run(token, "points", "--vault", s.url, "--json")
    assert code == 0, err
    return {p["id"]: p for p in json.loads(out)}


def _verify(s: Site) -> None:
    """Run the vault's verify job now (the server's own scheduler may be the one to take it)."""
    catalog = s.plane.catalog
    with catalog.tx() as db:
        db.execute("UPDATE vault_schedules SET next_verify = ? WHERE vault = 'v'", (time.time(),))
        before = db.execute("SELECT count(*) FROM jobs WHERE kind = 'verify'").fetchone()[0]
    time.sleep(0.01)  # the run's times come after every point written so far
    s.plane.tick()

    def done() -> bool:
        with catalog.read() as db:
            return bool(
                db.execute(
                    "SELECT count(*) FROM jobs WHERE kind = 'verify' AND finished IS NOT NULL"
                ).fetchone()[0]
                == before + 1
            )

    wait_for("the verify run", done, 60)


def _get(s: Site, path: str) -> Any:
    """The dashboard's JSON API, with the admin token."""
    req = urllib.request.Request(f"http://127.0.0.1:{s.ip.port}{path}")
    req.add_header("Authorization", f"Bearer {s.ip.tokens['admin']}")
    with urllib.request.urlopen(req, timeout=30) as reply:
        return json.loads(reply.read())


def _states(s: Site) -> dict[str, verifystate.PointVerify]:
    _, live, _ = points_pages.listing(s.plane, "site")
    return {r["id"]: r["verify"] for r in live}


def test_a_point_is_pending_verified_after_a_run_and_damage_shows_on_every_point(
    site: Site, run: Runner, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(300_000))
    (first,) = _backup(run, site, src)
    assert _states(site)[first].state == "pending"  # no verify run yet
    assert "never verified" in overview.sections(
        overview.views(site.plane.catalog, site.ip.server.vaults)
    )

    _verify(site)
    state = _states(site)[first]
    assert state.state == "verified" and state.checked is not None
    assert state.checked > os.stat(site.root / "points" / first).st_mtime
    (src / "b").write_bytes(os.urandom(200_000))
    second = next(p for p in _backup(run, site, src) if p != first)
    states = _states(site)
    assert (states[first].state, states[second].state) == ("verified", "pending")
    served = {p["id"]: p["verify"] for p in _get(site, "/v1/items/site/points")["points"]}
    assert served[first]["state"] == "verified" and served[first]["checked"] == state.checked
    assert served[second]["state"] == "pending"
    _, live, gone = points_pages.listing(site.plane, "site")
    page = points_pages.points_page(ADMIN, "site", "v", live, gone)
    when = pages.when(state.checked)
    assert f"verified</span> {when}" in page
    assert 'title="not yet listed by a verify run">pending</span>' in page
    view = overview.sections(overview.views(site.plane.catalog, site.ip.server.vaults))
    assert "1 point(s) verified, 1 pending" in view

    packs = sorted(p for p in (site.root / "data").rglob("*") if p.is_file())
    raw = bytearray(packs[0].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    packs[0].write_bytes(bytes(raw))
    _verify(site)
    states = _states(site)
    assert {s.state for s in states.values()} == {"damage found"}
    job = states[first].job
    assert job is not None
    assert site.plane.jobs.history("vault:v", 1)[0].id == job  # the failed run names the pack
    _, live, gone = points_pages.listing(site.plane, "site")
    page = points_pages.points_page(ADMIN, "site", "v", live, gone)
    assert page.count(f'href="/ui/jobs/{job}"') == 2
    view = overview.sections(overview.views(site.plane.catalog, site.ip.server.vaults))
    assert f'href="/ui/jobs/{job}"' in view and "damage found" in view
    (vault,) = _get(site, "/v1/vault-overview")["vaults"]
    assert vault["verify"]["damage_job"] == job and vault["verify"]["damaged_objects"] == 1
    assert {p["verify"]["state"] for p in _get(site, "/v1/items/site/points")["points"]} == {
        "damage found"
    }


def _factor(html: str, cls: str) -> float:
    found = re.search(rf'<td class="{cls}"><span data-value="([0-9.]+)">', html)
    assert found is not None, html
    return float(found.group(1))


def test_dedup_and_compression_are_shown_apart_from_the_writers_counts(
    site: Site, run: Runner, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    text = b"".join(b"line %08d of a compressible log file\n" % i for i in range(8 << 20 >> 5))
    text = text[: 8 << 20]
    for i in range(4):  # four identical copies: dedup
        (src / f"copy{i}.log").write_bytes(text)
    (src / "random").write_bytes(os.urandom(4 << 20))
    token = site.ip.tokens["backup"]
    sums = []
    for _ in range(2):  # the second point stores nothing new: dedup doubles
        code, out, err = run(
            token, "backup", "files", str(src), "--vault", site.url, "--source", "site", "--json"
        )
        assert code == 0, err
        sums.append(json.loads(out))
    logical = sum(s["logical_bytes"] for s in sums)
    assert logical == 2 * (4 * (8 << 20) + (4 << 20))
    raw = sum(s["data_added"] for s in sums)
    stored = sum(s["bytes_added"] for s in sums)
    assert abs(raw - (12 << 20)) < (1 << 20)  # one copy of the log, the random data
    compression, dedup = raw / stored, logical / raw
    assert compression > 1.5 and 5.5 < dedup < 6.5

    views = overview.views(site.plane.catalog, site.ip.server.vaults)
    html = overview.sections(views)
    assert _factor(html, "dedup") == pytest.approx(dedup, rel=0.03)
    assert _factor(html, "compression") == pytest.approx(compression, rel=0.03)
    (served,) = _get(site, "/v1/vault-overview")["vaults"]
    assert served["dedup"] == pytest.approx(dedup, rel=0.03)
    assert served["compression"] == pytest.approx(compression, rel=0.03)

    # a point from an older client (no counts in its facts): the product only, and why
    with site.plane.catalog.tx() as db:
        db.execute("DELETE FROM point_counts WHERE point = (SELECT min(point) FROM point_counts)")
    html = overview.sections(overview.views(site.plane.catalog, site.ip.server.vaults))
    assert '<td class="dedup"><span title="a point from an older client' in html
    assert "only the product (a point from an older client has no logical size)" in html


def _rules(catalog: Catalog) -> None:
    """The rule on a catalog filled by hand: which objects a point can use (those a run listed
    no later than the point's own object), checks after the point, and a prune's repack."""
    catalog.add_vault("v", "/nonexistent")
    pid = {n: f"{n:064x}" for n in (1, 2, 3)}
    t0 = 1_800_000_000.0
    rows = [  # (name, first_seen, checked, error)
        ("points/" + pid[1], t0 + 100, t0 + 110, None),
        ("data/aa/" + "a" * 64, t0 + 100, t0 + 105, None),
        ("points/" + pid[2], t0 + 300, t0 + 320, None),
        ("data/bb/" + "b" * 64, t0 + 300, None, None),  # listed, not checked yet
    ]
    with catalog.tx() as db:
        db.executemany(
            "INSERT INTO object_checks (vault, name, first_seen, checked, error)"
            " VALUES ('v', ?, ?, ?, ?)",
            rows,
        )
        db.execute(
            "INSERT INTO jobs (item, kind, scheduled, state, attempt, created, started, finished)"
            " VALUES ('vault:v', 'verify', ?, 'succeeded', 1, ?, ?, ?)",
            (t0 + 300, t0 + 300, t0 + 300, t0 + 330),
        )
    cover = verifystate.coverage(catalog, "v")
    assert cover.of(pid[1], t0 + 50) == verifystate.PointVerify("verified", t0 + 105)
    assert cover.of(pid[1], t0 + 106).state == "pending"  # a check before it was written
    assert cover.of(pid[2], t0 + 200).state == "pending"  # the pack listed with it is unchecked
    assert cover.of(pid[3], t0 + 310).state == "pending"  # written after the last listing
    # a pack deleted through the API after point 1 (a repack): it may use every listed pack
    catalog.audit(AuditEntry(t0 + 250, None, "maintenance", None, "DELETE", "v", "delete",
                             "data/cc/" + "c" * 64, 204, ""))  # fmt: skip
    assert verifystate.coverage(catalog, "v").of(pid[1], t0 + 50).state == "pending"
    with catalog.tx() as db:
        db.execute("UPDATE object_checks SET checked = ? WHERE checked IS NULL", (t0 + 325,))
    assert verifystate.coverage(catalog, "v").of(pid[1], t0 + 50).state == "verified"
    with catalog.tx() as db:
        db.execute("UPDATE object_checks SET error = 'bad' WHERE name LIKE 'data/aa/%'")
    damaged = verifystate.coverage(catalog, "v").of(pid[2], t0 + 200)
    assert damaged.state == "damage found" and damaged.why == "1 damaged object(s)"


def test_the_rule_on_sqlite(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path, create=True)
    try:
        _rules(catalog)
    finally:
        catalog.close()


def test_the_rule_on_postgres(tmp_path: Path) -> None:
    with postgres_cluster() as base:
        init_catalog(tmp_path / "data", new_database(base, "verifystate"))
        catalog = Catalog(tmp_path / "data")
        try:
            _rules(catalog)
            facts = pointmeta.PointFacts("p" * 64, "s", "files", "t", "c", [], 10, 30, 90)
            pointmeta.record(catalog, "v", facts)
            got = pointmeta.of_source(catalog, "v", "s")["p" * 64]
            assert (got["added"], got["raw"], got["logical"]) == (10, 30, 90)
        finally:
            catalog.close()
