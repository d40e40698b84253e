"""The dashboard against a real server and a real agent: Back up now followed to 100 % by
server-sent events, a failing backup turning its item red, cancelling a running backup, the
history's filters and pages, and a point forgotten by the CLI undeleted in the browser."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.control.conftest import Control, cli, env, ok, wait_for
from tests.server.conftest import free_port, init_server
from tests.web.conftest import PASSWORDS, ROLES, Tab, api

RED = "rgb(198, 40, 40)"
FILES_ITEMS = {"docs": (200, 4096), "bulk": (50, 4096)}


@dataclass
class Live:
    control: Control
    vault: str
    root: Path

    @property
    def url(self) -> str:
        return self.control.url

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, doc = api(self.url, self.control.admin, method, path, body)
        assert status in (200, 201), (path, status, doc)
        return doc

    def points(self, source: str) -> list[str]:
        rows = json.loads(ok(self.control.admin, "points", "--vault", self.vault, "--json"))
        return [str(r["id"]) for r in rows if r["source"] == source]


def _tree(root: Path, files: int, size: int) -> Path:
    root.mkdir(parents=True)
    for i in range(files):
        (root / f"f{i:05d}").write_bytes(os.urandom(size))
    return root


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("live")
    control = Control(root / "data", free_port(), init_server(root / "data"), time.time())
    control.start()
    try:
        vault = f"{control.url}/v"
        ok(control.admin, "init", "--vault", vault, "--kdf-memory", "1", "--kdf-time", "1")
        made = Live(control, vault, root)
        for name, role in ROLES.items():
            made.ok("POST", "/v1/users", {"name": name, "role": role, "password": PASSWORDS[name]})
        control.register("m1", root / "m1")
        control.register("m2", root / "m2")  # its agent runs in the cancel test only
        control.admin_json("policy", "create", "manual", "--vault", "v", "--schedule", "yearly")
        vanished = root / "vanished"
        targets = {n: _tree(root / n, *shape) for n, shape in FILES_ITEMS.items()}
        for name, target in [*targets.items(), ("gone", vanished)]:
            machine = "m2" if name == "bulk" else "m1"
            control.admin_json(
                "protect", "files", machine, str(target), "--name", name, "--policy", "manual"
            )
        control.start_agent("m1", root / "m1")
        yield made
    finally:
        for machine in list(control.agents):
            control.stop_agent(machine)
        control.stop()


@pytest.fixture
def tab(browser: Any, live: Live, tmp_path: Path) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    made = Tab(page, live.url, tmp_path / "screenshots")
    made.shots.mkdir()
    page.on("console", lambda m: made.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: made.errors.append(str(exc)))
    yield made
    context.close()


def _back_up_now(tab: Tab, item: str) -> int:
    tab.go("/ui/items")
    tab.page.locator(f"tr[data-item={item}]").get_by_role("button", name="Back up now").click()
    tab.page.wait_for_url(re.compile(r".*/ui/jobs/\d+$"))
    return int(tab.page.url.rsplit("/", 1)[1])


def _state(tab: Tab) -> Any:
    return tab.page.locator(".facts [data-fact=state] .badge")


def test_back_up_now_and_watch_the_progress_reach_100_by_sse(tab: Tab, live: Live) -> None:
    tab.login("olga")
    job = _back_up_now(tab, "docs")
    facts = tab.page.locator("dl.facts")
    # rendered while the job was queued: the page follows it by its event stream, not reloads
    assert facts.get_attribute("data-sse") == f"/ui/events/jobs/{job}"
    tab.page.evaluate("window.notReloaded = true")
    tab.shot("job-live")
    expect(facts).to_have_attribute("data-ended", "1", timeout=60_000)
    assert facts.locator(".pct").inner_text() == "100 %"
    assert facts.locator("progress").evaluate("p => p.value") == 100
    assert _state(tab).inner_text() == "succeeded"
    assert tab.page.evaluate("window.notReloaded") is True
    assert int(facts.get_attribute("data-updates") or 0) >= 2  # queued -> ... -> succeeded
    assert "point" in tab.page.locator("ol.log").inner_text()  # log lines arrived live
    assert tab.page.get_by_role("button", name="Cancel job").count() == 0
    tab.shot("job-done")
    assert live.ok("GET", f"/v1/jobs/{job}")["state"] == "succeeded"
    tab.go("/")
    assert tab.page.locator("tr[data-item=docs] .badge").inner_text() == "ok"
    assert tab.errors == []


def test_a_failing_backup_turns_its_item_red(tab: Tab, live: Live) -> None:
    tab.login("olga")
    job = _back_up_now(tab, "gone")  # its folder vanished
    expect(_state(tab)).to_have_text("failed", timeout=60_000)
    assert tab.page.locator(".facts [data-fact=reason]").inner_text() != "-"
    tab.shot("job-failed")
    assert live.ok("GET", f"/v1/jobs/{job}")["state"] == "failed"
    tab.go("/")
    badge = tab.page.locator("tr[data-item=gone] .badge")
    assert badge.inner_text() == "failed"
    assert badge.evaluate("b => getComputedStyle(b).backgroundColor") == RED
    tab.shot("overview-failed")
    assert tab.errors == []


def test_a_point_forgotten_by_the_cli_is_undeleted_in_the_browser(tab: Tab, live: Live) -> None:
    point = wait_for("a point of docs", lambda: live.points("docs"), 60)[-1]
    done = cli(live.control.admin, "forget", point, "--vault", live.vault)
    assert done.returncode == 0, done.stderr
    assert point not in live.points("docs")
    tab.login("olga")
    tab.go("/ui/items/docs/points")
    tables = tab.page.locator("table")
    assert point[:12] not in tables.nth(0).inner_text()
    row = tables.nth(1).locator(f"tr[data-point='{point}']")
    assert row.count() == 1
    cells = row.inner_text()
    assert "files" in cells and "KiB" in cells  # the mirror's kind and size added
    tab.shot("points-forgotten")
    # keyboard: Tab reaches the Undelete button, Enter presses it
    button = row.get_by_role("button", name=f"Undelete point {point[:12]}")
    for _ in range(60):
        if button.evaluate("b => b === document.activeElement"):
            break
        tab.page.keyboard.press("Tab")
    else:
        raise AssertionError("Undelete is not reachable with the keyboard")
    with tab.page.expect_navigation():
        tab.page.keyboard.press("Enter")
    assert tab.page.url == live.url + "/ui/items/docs/points"
    assert tables.nth(0).locator(f"tr[data-point='{point}']").count() == 1
    assert "No forgotten points." in tables.nth(1).inner_text()
    tab.shot("points-undeleted")
    assert point in live.points("docs")  # the CLI lists it again
    audit = live.ok("GET", "/v1/audit?limit=1000")
    assert any(a["action"] == "ui-undelete-point" and a["status"] == 303 for a in audit["entries"])
    assert tab.errors == []


def _paused_agent(live: Live, machine: str, pause: Path) -> None:
    """The machine's agent, whose next backup stops after uploading its packs (before the
    index and the point) until ``pause`` is removed: a backup running as long as we like."""
    folder = live.root / machine
    extra = {
        "STRONGROOM_AGENT_PROGRESS": "0.2",
        "STRONGROOM_FAILPOINT": "after-packs",
        "STRONGROOM_FAILPOINT_PAUSE": str(pause),
        "XDG_CACHE_HOME": str(folder / "xdg"),
    }
    args = ["agent", "run", "--config", str(folder), "--wait", "1"]
    live.control.agents[machine] = subprocess.Popen(
        [sys.executable, "-m", "strongroom.cli.main", *args],
        env=env(**extra),
        stderr=subprocess.DEVNULL,
    )


def test_cancel_a_running_backup_from_the_browser(tab: Tab, live: Live) -> None:
    pause = live.root / "paused"
    _paused_agent(live, "m2", pause)
    tab.login("alice")
    job = _back_up_now(tab, "bulk")
    expect(_state(tab)).to_have_text("running", timeout=60_000)
    wait_for("the backup to reach its pause", pause.exists, 60)
    expect(tab.page.locator(".facts [data-fact=files]")).to_have_text("50", timeout=30_000)
    tab.shot("job-cancelling")
    with tab.page.expect_navigation():
        tab.page.get_by_role("button", name="Cancel job").click()
    assert tab.page.url == live.url + f"/ui/jobs/{job}"
    expect(tab.page.locator("ol.log")).to_contain_text("cancel requested")
    time.sleep(2)  # the agent hears of it at its next progress report (every 0.2 s)
    pause.unlink()
    expect(_state(tab)).to_have_text("cancelled", timeout=60_000)
    assert tab.page.get_by_role("button", name="Cancel job").count() == 0
    shown = live.ok("GET", f"/v1/jobs/{job}")
    assert shown["state"] == "cancelled" and shown["point"] is None, shown
    live.control.stop_agent("m2")
    # packs uploaded, no point: nothing references them, and the vault checks clean
    check = cli(live.control.admin, "check", "--read-data", "--vault", live.vault)
    assert check.returncode == 0, check.stdout + check.stderr
    assert live.points("bulk") == []
    assert tab.errors == []


def _idle_jobs(live: Live, n: int) -> list[float]:
    """``n`` cancelled jobs of an item whose machine runs no agent; their creation times."""
    live.ok("POST", "/v1/agent/register", {"name": "idle"})
    item = {"name": "idle", "kind": "files", "machine": "idle", "targets": ["/x"]}
    live.ok("POST", "/v1/items", {**item, "policy": "manual"})
    created = []
    for _ in range(n):
        job = live.ok("POST", "/v1/items/idle/backup-now")["job"]
        live.ok("POST", f"/v1/jobs/{job}/cancel")
        created.append(float(live.ok("GET", f"/v1/jobs/{job}")["created"]))
    return created


def test_history_filters_and_pages(tab: Tab, live: Live) -> None:
    created = _idle_jobs(live, 27)
    tab.login("vic")
    tab.go("/ui/jobs")
    tab.page.get_by_label("Item").select_option("idle")
    tab.page.get_by_label("State").select_option("cancelled")
    tab.page.get_by_role("button", name="Filter").click()
    history = tab.page.locator("table").nth(1)
    expect(history.locator("tbody tr")).to_have_count(25)
    assert history.locator("tbody").inner_text().count("idle") == 25
    tab.page.get_by_role("link", name="Older jobs").click()
    expect(history.locator("tbody tr")).to_have_count(2)
    assert tab.page.get_by_role("link", name="Older jobs").count() == 0
    assert "page=2" in tab.page.url and "state=cancelled" in tab.page.url
    # the days the jobs were made on (a run can cross midnight UTC: a CI run once did)
    first, last = (time.strftime("%Y-%m-%d", time.gmtime(t)) for t in (created[0], created[-1]))
    tab.go(f"/ui/jobs?item=idle&since={first}&until={last}")
    assert history.locator("tbody tr").count() == 25
    if first == last:
        tab.go(f"/ui/jobs?item=idle&since={first}&until={first}&state=cancelled&page=2")
        assert history.locator("tbody tr").count() == 2
    tab.go("/ui/jobs?item=idle&until=2001-01-01")
    assert "No jobs match." in history.inner_text()
    reply = tab.page.request.get(live.url + "/ui/jobs?since=yesterday")
    assert reply.status == 400 and "not a day" in reply.text()
    assert tab.errors == []


def test_a_viewer_undeletes_and_cancels_nothing(tab: Tab, live: Live) -> None:
    point = live.points("docs")[-1]
    assert cli(live.control.admin, "forget", point, "--vault", live.vault).returncode == 0
    job = live.ok("POST", "/v1/items/idle/backup-now")["job"]
    tab.login("vic")
    tab.go("/ui/items/docs/points")
    assert tab.page.get_by_role("button", name=re.compile("Undelete")).count() == 0
    tab.go(f"/ui/jobs/{job}")
    assert tab.page.get_by_role("button", name="Cancel job").count() == 0
    csrf = tab.csrf()
    writes = [f"/ui/items/docs/points/{point}/undelete", f"/ui/jobs/{job}/cancel"]
    for path in writes:
        assert tab.page.request.post(live.url + path, form={"csrf": csrf}).status == 403
    tab.page.context.clear_cookies()
    tab.login("olga")  # a writer without the CSRF token is refused too
    for path in writes:
        reply = tab.page.request.post(live.url + path, form={"csrf": "wrong"})
        assert reply.status == 403 and "CSRF" in reply.text()
        assert tab.page.request.post(live.url + path).status == 403
    assert point not in live.points("docs")
    assert live.ok("GET", f"/v1/jobs/{job}")["state"] == "queued"
    live.ok("POST", f"/v1/jobs/{job}/cancel")
    # the event streams need a session (GET, so no CSRF)
    tab.page.context.clear_cookies()
    assert tab.page.request.get(live.url + f"/ui/events/jobs/{job}").status == 401
    assert tab.page.request.get(live.url + "/ui/events/jobs").status == 401
    assert tab.errors == []


def test_every_new_page_at_desktop_and_phone_width(tab: Tab, live: Live) -> None:
    tab.login("alice")
    last = live.ok("GET", "/v1/jobs?item=docs")["jobs"][0]["id"]
    pages = {
        "jobs": "/ui/jobs",
        "jobs-filtered": "/ui/jobs?item=idle&state=cancelled&page=2",
        "job": f"/ui/jobs/{last}",
        "points": "/ui/items/docs/points",
    }
    for width, height, suffix in ((1280, 800, ""), (390, 844, "-phone")):
        tab.page.set_viewport_size({"width": width, "height": height})
        for name, path in pages.items():
            tab.go(path)
            tab.page.wait_for_load_state("load")
            wide = tab.page.evaluate("document.documentElement.scrollWidth")
            assert wide <= width, (name, width, wide)
            tab.shot(name + suffix)
    assert len(list(tab.shots.iterdir())) == 2 * len(pages)
    assert tab.errors == []
