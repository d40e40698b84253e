"""The dashboard's management pages in real headless Chromium: policy and item forms, the
retention simulator, vault usage on the overview, agents, vault settings with second-admin
approval, and what viewers and operators may not do."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.control.conftest import cli, wait_for
from tests.web.conftest import Dash, Tab, api

DAY = 86400.0
REPO = Path(__file__).resolve().parents[2]


def ok(token: str, *args: str) -> str:
    done = cli(token, *args)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def vault(dash: Dash, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Vault v on the server, with three real points of the item ``site``."""
    url = f"{dash.url}/v"
    ok(dash.admin, "init", "--vault", url, "--kdf-memory", "1", "--kdf-time", "1")
    src = tmp_path_factory.mktemp("site")
    for i in range(3):
        (src / f"f{i}.txt").write_text(f"version {i}\n" * 1000)
        ok(dash.admin, "backup", "files", str(src), "--source", "site", "--vault", url, "--json")
    return url


def _points(dash: Dash, url: str) -> list[str]:
    rows = json.loads(ok(dash.admin, "points", "--vault", url, "--json"))
    return sorted(r["id"] for r in rows if r["source"] == "site")


def _samples(dash: Dash) -> int:
    with sqlite3.connect(dash.data / "catalog.sqlite") as db:
        row = db.execute("SELECT count(*) FROM vault_usage WHERE vault = 'v'").fetchone()
    return int(row[0])


def test_an_admin_creates_and_edits_a_policy_and_an_item(tab: Tab, dash: Dash) -> None:
    tab.login("alice")
    tab.go("/ui/policies")
    tab.page.get_by_role("link", name="New policy").click()
    form = tab.page.locator("form.card")
    form.get_by_label("Name").fill("weekly")
    form.get_by_label("Vault").fill("v")
    form.get_by_label("Schedule").fill("whenever")
    form.get_by_role("button", name="Create policy").click()
    assert "invalid schedule" in tab.page.locator("[role=alert]").inner_text()
    tab.errors.clear()  # the refused form's 400
    form.get_by_label("Schedule").fill("sun 03:00")
    form.get_by_label("daily").fill("7")
    form.get_by_role("button", name="Create policy").click()
    tab.page.wait_for_url(dash.url + "/ui/policies")
    assert "daily 7" in tab.page.locator("tr[data-policy=weekly]").inner_text()
    made = {p["name"]: p for p in dash.ok("GET", "/v1/policies")["policies"]}
    assert (made["weekly"]["schedule"], made["weekly"]["keep_daily"]) == ("sun 03:00", 7)

    tab.go("/ui/items")
    tab.page.get_by_role("link", name="Protect an item").click()
    tab.page.get_by_label("Name").fill("docs")
    tab.page.get_by_label("Paths, domain or image").fill("/docs\n/home")
    tab.page.get_by_label("Policy").select_option("nightly")
    tab.shot("item-new")
    tab.page.get_by_role("button", name="Protect item").click()
    tab.page.wait_for_url(dash.url + "/ui/items")
    # assign the new policy to the item
    tab.page.get_by_role("link", name="Edit docs").click()
    tab.page.get_by_label("Policy").select_option("weekly")
    tab.shot("item-edit")
    tab.page.get_by_role("button", name="Save item").click()
    tab.page.wait_for_url(dash.url + "/ui/items")
    items = {i["name"]: i for i in dash.ok("GET", "/v1/items")["items"]}
    assert items["docs"]["policy"] == "weekly" and items["docs"]["targets"] == ["/docs", "/home"]

    tab.go("/ui/policies")
    tab.page.get_by_role("link", name="Edit weekly").click()
    tab.page.get_by_label("Schedule").fill("sat 04:00")
    tab.page.get_by_label("last").fill("3")
    tab.shot("policy-edit")
    tab.page.get_by_role("button", name="Save policy").click()
    tab.page.wait_for_url(dash.url + "/ui/policies")
    made = {p["name"]: p for p in dash.ok("GET", "/v1/policies")["policies"]}
    assert (made["weekly"]["schedule"], made["weekly"]["keep_last"]) == ("sat 04:00", 3)
    assert tab.errors == []


def test_the_retention_simulator_shows_forgets_reasons_and_changes_nothing(
    tab: Tab, dash: Dash, vault: str
) -> None:
    before = _points(dash, vault)
    assert len(before) == 3
    tab.login("vic")  # it changes nothing: a viewer may use it
    tab.go("/ui/items")
    tab.page.get_by_role("link", name="Retention site").click()
    assert "no keep rule" in tab.page.locator("table").last.inner_text()  # nightly keeps all
    # keyboard only: to the "last" field, type 2, tab on to the button, Enter
    tab.page.get_by_label("last").focus()
    tab.page.keyboard.press("Control+A")
    tab.page.keyboard.type("2")
    for _ in range(20):
        if tab.page.evaluate("document.activeElement.textContent") == "Simulate":
            break
        tab.page.keyboard.press("Tab")
    tab.page.keyboard.press("Enter")
    tab.page.wait_for_url(re.compile(r".*keep_last=2.*"))
    verdict = tab.page.locator("[role=status].verdict").inner_text()
    assert verdict.startswith("2 of 3 points kept, 1 would be forgotten")
    rows = tab.page.locator("tr[data-point]")
    assert [rows.nth(i).locator(".badge").inner_text() for i in range(3)] == [
        "keep",
        "keep",
        "forget",
    ]
    assert "last 2" in rows.nth(0).inner_text() and "no rule keeps it" in rows.nth(2).inner_text()
    tab.shot("retention-simulator")
    tab.go("/ui/retention?item=site&keep_daily=1")
    rows = json.loads(ok(dash.admin, "points", "--vault", vault, "--json"))
    newest = max(r["time"] for r in rows if r["source"] == "site")
    day = newest[:10]  # the newest point's own day: the test may run across midnight UTC
    assert f"daily {day}" in tab.page.locator("tr[data-point]").first.inner_text()
    assert _points(dash, vault) == before  # nothing was forgotten
    assert tab.errors == []


def test_the_overview_draws_usage_with_a_date_of_full(tab: Tab, dash: Dash, vault: str) -> None:
    wait_for("a usage sample of v", lambda: _samples(dash) >= 1, 30)
    # after a backup an agent finishes, the server samples the vault again
    agent = dash.ok("POST", "/v1/agent/register", {"name": "m9"})["token"]
    item = {"name": "notes", "kind": "files", "machine": "m9", "targets": ["/n"]}
    dash.ok("POST", "/v1/items", {**item, "policy": "nightly"})
    job = dash.ok("POST", "/v1/items/notes/backup-now")["job"]
    assert api(dash.url, agent, "GET", "/v1/agent/jobs")[1]["job"] == job
    count = _samples(dash)
    result = {"state": "succeeded", "bytes_read": 40_000, "bytes_added": 10_000}
    assert api(dash.url, agent, "POST", f"/v1/agent/jobs/{job}/result", result)[0] == 200
    wait_for("a sample after the backup", lambda: _samples(dash) > count, 30)
    # a month of history instead: 1 GiB a day, capacity 100 GiB (no backup finishes from
    # here on, so the sampler leaves it alone for an hour)
    now = time.time() - 60
    with sqlite3.connect(dash.data / "catalog.sqlite") as db:
        db.execute("DELETE FROM vault_usage")
        db.executemany(
            "INSERT INTO vault_usage VALUES ('v', ?, ?, ?)",
            [(now - (29 - i) * DAY, (i + 1) * 2**30, 100 * 2**30) for i in range(30)],
        )
    tab.login("alice")
    row = tab.page.locator("tr[data-vault=v]")
    expect(row).to_be_visible()
    full = row.locator(".full").inner_text()  # 70 more days at 1 GiB a day
    expected = time.strftime("%Y-%m-%d", time.gmtime(now + 70 * DAY))
    assert full.startswith(expected) and full.endswith(" UTC"), full
    # the vault's points carry their chunk counts: dedup and compression apart, and their product
    dedup, compression = (
        float(row.locator(f".{c} span").get_attribute("data-value") or "0")
        for c in ("dedup", "compression")
    )
    assert dedup > 0 and compression > 0
    reduction = float(row.locator(".reduction").inner_text().removesuffix("x"))
    assert reduction == pytest.approx(dedup * compression, abs=0.06)
    assert row.locator(".verify").inner_text() == "never verified"
    titles = tab.page.locator("svg title")
    assert titles.count() >= 30 and "Used, " in titles.first.text_content()
    tab.page.get_by_text("Usage as a table").click()  # the same numbers, as a table
    assert tab.page.locator("table", has_text="Usage samples of vault v").locator("tr").count() > 30
    shot = tab.shot("overview-usage")
    if os.environ.get("STRONGROOM_README_SHOT"):
        # the README's picture, refreshed on request only (tests leave the tree alone)
        tab.page.get_by_text("Usage as a table").click()  # closed again: a shorter picture
        tab.page.set_viewport_size({"width": 1280, "height": 800})
        shot = tab.shot("overview-readme")
        shutil.copyfile(shot, REPO / "docs" / "dashboard-overview.png")
    assert tab.errors == []


def _admin_token(dash: Dash, label: str) -> str:
    made = dash.ok("POST", "/v1/tokens", {"role": "admin", "label": label})
    token: str = made["token"]
    return token


def _lower(dash: Dash, token: str, url: str, days: int) -> str:
    """Ask to lower soft delete to ``days``; the pending request's id."""
    done = cli(token, "settings", "--soft-delete-days", str(days), "--vault", url, "--json")
    found = re.search(r"strongroom approve ([0-9a-f]+)", done.stderr)
    assert done.returncode == 1 and found, done.stderr
    return found.group(1)


def test_a_second_admin_approves_or_rejects_a_lowered_setting(
    tab: Tab, dash: Dash, vault: str
) -> None:
    _admin_token(dash, "second admin")  # with two admins, lowering needs approval
    ok(dash.admin, "settings", "--soft-delete-days", "30", "--vault", vault, "--json")
    first = _lower(dash, dash.admin, vault, 7)
    tab.login("alice")
    tab.go("/ui/vaults")
    row = tab.page.locator("tr[data-vault=v]")
    assert row.locator(".soft").inner_text() == "30"
    request = tab.page.locator(f"tr[data-approval='{first}']")
    assert "soft_delete_days 30 -> 7" in request.inner_text()
    tab.shot("vaults-pending")
    request.get_by_role("button", name=f"Approve request {first}").click()
    assert "Approved" in tab.page.locator("[role=status]").inner_text()
    assert row.locator(".soft").inner_text() == "7"
    assert "approved" in request.inner_text() and "user:alice" in request.inner_text()

    second = _lower(dash, dash.admin, vault, 3)
    tab.go("/ui/vaults")
    tab.page.get_by_role("button", name=f"Reject request {second}").click()
    assert "rejected" in tab.page.locator(f"tr[data-approval='{second}']").inner_text()
    assert row.locator(".soft").inner_text() == "7"

    # a request made with a token alice created herself is not hers to approve
    tab.go("/ui/tokens")
    tab.page.get_by_label("Role").select_option("admin")
    tab.page.get_by_role("button", name="Create token").click()
    own = tab.page.locator("#new-token").inner_text()
    mine = tab.page.locator(f"tr[data-token='{own.split('_')[1]}']")
    assert "user:alice" in mine.inner_text()  # who created it
    third = _lower(dash, own, vault, 1)
    tab.go("/ui/vaults")
    tab.page.get_by_role("button", name=f"Approve request {third}").click()
    assert "a token you created" in tab.page.locator("[role=alert]").inner_text()
    tab.errors.clear()  # the refusal's 403
    tab.go("/ui/vaults")
    assert "pending" in tab.page.locator(f"tr[data-approval='{third}']").inner_text()
    # the settings form needs an online agent of the vault to sign (none polls here)
    form = tab.page.locator("form[data-settings=v]")
    form.get_by_label("Soft delete (days)").fill("1")
    form.get_by_role("button", name="Change settings of v").click()
    assert "no online agent backs up into 'v'" in tab.page.locator("[role=alert]").inner_text()
    tab.errors.clear()  # the refusal's 409
    tab.go("/ui/vaults")
    assert row.locator(".soft").inner_text() == "7"
    # the quota is the capacity of the estimate
    row.get_by_label("Quota of v").fill("50G")
    row.get_by_role("button", name="Set quota of v").click()
    assert "50.0 GiB" in tab.page.locator("tr[data-vault=v]").inner_text()
    assert tab.errors == []


def test_the_agents_page_lists_machines_their_items_and_last_contact(tab: Tab) -> None:
    tab.login("olga")
    tab.go("/ui/agents")
    row = tab.page.locator("tr[data-agent=m1]")
    text = row.inner_text()
    assert "127.0.0.1" in text and "online" in text
    assert row.get_by_role("link", name="site").count() == 1
    assert row.get_by_role("link", name="db").count() == 1
    assert tab.page.locator("th", has_text="Token").count() == 0  # an admin's column
    tab.shot("agents")
    assert tab.errors == []


def test_viewers_and_operators_cannot_change_definitions_or_settings(
    tab: Tab, dash: Dash, vault: str
) -> None:
    policy = {"name": "evil", "vault": "v", "schedule": "hourly"}
    item = {"name": "evil", "kind": "files", "machine": "m1", "targets": "/", "policy": "nightly"}
    writes = {
        "/ui/policies": policy,
        "/ui/policies/nightly/edit": {**policy, "name": "nightly", "keep_last": "1"},
        "/ui/items": item,
        "/ui/items/site/edit": {**item, "targets": "/evil"},
        "/ui/vaults/v/quota": {"quota": "1"},
        "/ui/approvals/0123456789abcdef/approve": {},
        "/ui/approvals/0123456789abcdef/reject": {},
    }
    for user in ("vic", "olga"):
        tab.login(user)
        csrf = tab.csrf()
        for path, form in writes.items():
            reply = tab.page.request.post(dash.url + path, form={**form, "csrf": csrf})
            assert reply.status == 403, (user, path, reply.status)
        for path in ("/ui/new-policy", "/ui/new-item", "/ui/policies/nightly/edit"):
            assert tab.page.request.get(dash.url + path).status == 403, (user, path)
        tab.go("/ui/vaults")  # they see the settings, not the buttons
        assert (
            tab.page.get_by_role("button", name=re.compile("Approve|Reject|Set quota")).count() == 0
        )
        tab.page.get_by_role("button", name="Log out").click()
    tab.login("alice")
    for path, form in writes.items():  # an admin without the CSRF token
        reply = tab.page.request.post(dash.url + path, form=form)
        assert reply.status == 403 and "CSRF" in reply.text(), path
    names = {p["name"] for p in dash.ok("GET", "/v1/policies")["policies"]}
    items = {i["name"]: i for i in dash.ok("GET", "/v1/items")["items"]}
    assert "evil" not in names and "evil" not in items and items["site"]["targets"] == ["/srv"]


def test_every_management_page_at_desktop_and_phone_width(tab: Tab, dash: Dash, vault: str) -> None:
    tab.login("alice")
    pages = {
        "overview": "/",
        "policies": "/ui/policies",
        "policy-new": "/ui/new-policy",
        "policy-edit": "/ui/policies/nightly/edit",
        "item-new": "/ui/new-item",
        "item-edit": "/ui/items/site/edit",
        "retention": "/ui/retention?item=site&keep_last=1&keep_daily=2",
        "agents": "/ui/agents",
        "vaults": "/ui/vaults",
        "tokens": "/ui/tokens",
    }
    for width, height, suffix in ((1280, 800, ""), (390, 844, "-phone")):
        tab.page.set_viewport_size({"width": width, "height": height})
        for name, path in pages.items():
            tab.go(path)
            tab.page.wait_for_load_state("load")
            wide = tab.page.evaluate("document.documentElement.scrollWidth")
            assert wide <= width, (name, width, wide)
            tab.shot(name + suffix)
    shots = {p.name for p in tab.shots.iterdir()}
    assert shots == {f"{n}{s}.png" for n in pages for s in ("", "-phone")}
    assert tab.errors == []
