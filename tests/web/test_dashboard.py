"""The dashboard in real headless Chromium: login, health, tokens, roles, CSRF, every page."""

from __future__ import annotations

import re
import sqlite3

from playwright.sync_api import expect

from tests.web.conftest import PASSWORDS, Dash, Tab, api

RED = "rgb(198, 40, 40)"


def test_every_page_at_desktop_and_phone_width_without_console_errors(tab: Tab, dash: Dash) -> None:
    tab.login("alice")
    pages = {
        "overview": "/",
        "items": "/ui/items",
        "jobs": "/ui/jobs",
        "jobs-filtered": "/ui/jobs?item=site&state=failed",
        "job": f"/ui/jobs/{dash.failed_job}",
        "tokens": "/ui/tokens",
        "audit": "/ui/audit",
    }
    for width, height, suffix in ((1280, 800, ""), (390, 844, "-phone")):
        tab.page.set_viewport_size({"width": width, "height": height})
        for name, path in pages.items():
            tab.go(path)
            tab.page.wait_for_load_state("load")
            # nothing wider than the screen but the scrolling tables
            wide = tab.page.evaluate("document.documentElement.scrollWidth")
            assert wide <= width, (name, width, wide)
            tab.shot(name + suffix)  # the README's picture: test_manage.py (vault usage)
    assert sorted(p.name for p in tab.shots.iterdir()) == sorted(
        f"{n}{s}.png" for n in pages for s in ("", "-phone")
    )
    tab.go(f"/ui/jobs/{dash.failed_job}")
    assert "disk full" in tab.page.locator("ol.log").inner_text()
    tab.go("/ui/audit")  # the dashboard's own login is audited, with the user's name
    assert "user alice" in tab.page.locator("table").inner_text()
    assert tab.errors == []


def test_login_sets_a_strict_httponly_session_and_logout_ends_it(tab: Tab, dash: Dash) -> None:
    tab.go("/")
    assert tab.page.url == dash.url + "/ui/login"  # not logged in: the login form
    tab.page.get_by_label("User name").fill("alice")
    tab.page.get_by_label("Password").fill("wrong password")
    tab.page.get_by_role("button", name="Log in").click()
    assert "wrong user name or password" in tab.page.locator("[role=alert]").inner_text()
    tab.errors.clear()  # the 401 of the refused login is logged by the browser
    # keyboard only: the user field has the focus, Tab to the password, Enter submits
    tab.page.get_by_label("User name").fill("")
    tab.page.keyboard.type("alice")
    tab.page.keyboard.press("Tab")
    tab.page.keyboard.type(PASSWORDS["alice"])
    tab.page.keyboard.press("Enter")
    tab.page.wait_for_url(dash.url + "/")
    cookie = next(c for c in tab.page.context.cookies() if c["name"] == "sr_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert not cookie["secure"]  # plain http on loopback; Secure is set under TLS
    tab.page.keyboard.press("Tab")  # keyboard: the first stop is a real link
    assert tab.page.evaluate("document.activeElement.tagName") == "A"
    tab.page.get_by_role("button", name="Log out").click()
    tab.page.wait_for_url(dash.url + "/ui/login")
    # the old session id is dead on the server, not only forgotten by the browser
    tab.page.context.add_cookies([{**cookie}])
    tab.go("/")
    assert tab.page.url == dash.url + "/ui/login"
    assert tab.errors == []


def test_an_item_whose_backup_failed_is_red(tab: Tab) -> None:
    tab.login("alice")
    badge = tab.page.locator("tr[data-item=site] .badge")
    assert badge.inner_text() == "failed"
    assert badge.evaluate("b => getComputedStyle(b).backgroundColor") == RED
    assert tab.page.locator("[aria-label='Items by health'] .s-failed .n").inner_text() == "1"
    assert tab.page.locator("tr[data-item=db] .badge").inner_text() == "warning"
    tab.go("/ui/items")
    assert tab.page.locator("tr[data-item=site] .badge").inner_text() == "failed"
    tab.shot("failed-item")


def test_create_a_token_revealed_once_and_revoke_it(tab: Tab, dash: Dash) -> None:
    tab.login("alice")
    tab.go("/ui/tokens")
    tab.page.get_by_label("Role").select_option("restore")
    tab.page.get_by_label("Label").fill("from the browser")
    tab.page.get_by_role("button", name="Create token").click()
    secret = tab.page.locator("#new-token").inner_text()
    assert secret.startswith("srt_")
    token_id = secret.split("_")[1]
    tab.shot("token-revealed")
    assert api(dash.url, secret, "GET", "/v1/vaults/v/objects")[0] != 401
    tab.go("/ui/tokens")
    assert secret not in tab.page.content()  # shown once only
    row = tab.page.locator(f"tr[data-token='{token_id}']")
    assert "from the browser" in row.inner_text()
    row.get_by_role("button", name=f"Revoke token {token_id}").click()
    tab.page.wait_for_url(dash.url + "/ui/tokens")
    assert "revoked" in tab.page.locator(f"tr[data-token='{token_id}']").inner_text()
    assert api(dash.url, secret, "GET", "/v1/vaults/v/objects")[0] == 401
    assert tab.errors == []


def test_a_viewer_changes_nothing(tab: Tab, dash: Dash) -> None:
    tab.login("vic")
    job = dash.queued["site"]
    tab.go(f"/ui/jobs/{job}")
    assert tab.page.get_by_role("button", name="Cancel job").count() == 0
    tab.shot("viewer-job")
    tab.go("/ui/items")
    assert tab.page.get_by_role("button", name="Back up now").count() == 0
    assert tab.page.get_by_role("link", name="Tokens").count() == 0
    csrf = tab.csrf()
    forged = {
        f"/ui/jobs/{job}/cancel": {},
        "/ui/items/site/backup-now": {},
        "/ui/tokens": {"role": "admin", "label": "forged"},
        f"/ui/tokens/{_admin_token_id(dash)}/revoke": {},
    }
    for path, form in forged.items():
        reply = tab.page.request.post(dash.url + path, form={**form, "csrf": csrf})
        assert reply.status == 403, (path, reply.status)
        reply = tab.page.request.post(dash.url + path, headers={"X-CSRF-Token": csrf})
        assert reply.status == 403, path
    assert tab.page.request.get(dash.url + "/ui/tokens").status == 403
    assert tab.page.request.get(dash.url + "/ui/audit").status == 403
    assert dash.ok("GET", f"/v1/jobs/{job}")["state"] == "queued"
    tokens = dash.ok("GET", "/v1/tokens")["tokens"]
    assert not any(t["label"] == "forged" or t["revoked"] for t in tokens if t["role"] == "admin")


def test_an_operator_cancels_a_job_but_sees_no_tokens(tab: Tab, dash: Dash) -> None:
    tab.login("olga")
    job = dash.queued["db"]
    tab.go(f"/ui/jobs/{job}")
    tab.page.get_by_role("button", name="Cancel job").click()
    tab.page.wait_for_url(dash.url + f"/ui/jobs/{job}")
    assert tab.page.locator(".facts .badge").inner_text() == "cancelled"
    assert dash.ok("GET", f"/v1/jobs/{job}")["state"] == "cancelled"
    assert tab.page.request.get(dash.url + "/ui/tokens").status == 403
    reply = tab.page.request.post(dash.url + "/ui/tokens", form={"csrf": tab.csrf()})
    assert reply.status == 403


def test_a_post_without_the_csrf_token_is_refused(tab: Tab, dash: Dash) -> None:
    tab.login("alice")
    before = len(dash.ok("GET", "/v1/tokens")["tokens"])
    for extra in ({}, {"csrf": "not-the-token"}):
        reply = tab.page.request.post(
            dash.url + "/ui/tokens", form={"role": "backup", "label": "no csrf", **extra}
        )
        assert reply.status == 403
        assert "CSRF" in reply.text()
    reply = tab.page.request.post(dash.url + f"/ui/jobs/{dash.queued['site']}/cancel")
    assert reply.status == 403
    assert len(dash.ok("GET", "/v1/tokens")["tokens"]) == before
    assert dash.ok("GET", f"/v1/jobs/{dash.queued['site']}")["state"] == "queued"


def test_a_post_without_a_session_is_refused(tab: Tab, dash: Dash) -> None:
    tab.go("/ui/login")
    reply = tab.page.request.post(dash.url + "/ui/tokens", form={"role": "admin", "csrf": "x"})
    assert reply.status == 401


def test_users_are_stored_with_argon2id(dash: Dash) -> None:
    with sqlite3.connect(dash.data / "catalog.sqlite") as db:
        rows = dict(db.execute("SELECT name, password FROM users").fetchall())
    assert set(rows) == {"alice", "olga", "vic"}
    assert all(h.startswith("$argon2id$") for h in rows.values())


def _admin_token_id(dash: Dash) -> str:
    return dash.admin.split("_")[1]


def test_back_up_now_and_watch_the_progress_reach_100(tab: Tab, dash: Dash) -> None:
    """An operator starts a backup from the browser; an agent (its token, over the API) claims
    it and reports progress; the job's page follows it to 100 % and the item turns green."""
    agent = dash.ok("POST", "/v1/agent/register", {"name": "m2"})["token"]
    item = {"name": "web", "kind": "files", "machine": "m2", "targets": ["/web"]}
    dash.ok("POST", "/v1/items", {**item, "policy": "nightly"})
    tab.login("olga")
    tab.go("/ui/items")
    tab.page.locator("tr[data-item=web]").get_by_role("button", name="Back up now").click()
    tab.page.wait_for_url(re.compile(r".*/ui/jobs/\d+$"))
    job_id = int(tab.page.url.rsplit("/", 1)[1])
    status, work = api(dash.url, agent, "GET", "/v1/agent/jobs")
    assert status == 200 and work["job"] == job_id
    progress = {"percent": 40, "bytes_read": 4096, "log": ["reading /web"]}
    assert api(dash.url, agent, "POST", f"/v1/agent/jobs/{job_id}/progress", progress)[0] == 200
    pct = tab.page.locator(".facts .pct")
    expect(pct).to_have_text("40 %", timeout=15_000)  # the page refreshes itself
    tab.shot("job-running")
    result = {"state": "succeeded", "bytes_read": 8192, "files": 3, "log": ["done"]}
    assert api(dash.url, agent, "POST", f"/v1/agent/jobs/{job_id}/result", result)[0] == 200
    expect(pct).to_have_text("100 %", timeout=15_000)
    assert tab.page.locator(".facts .badge").inner_text() == "succeeded"
    tab.shot("job-succeeded")
    tab.go("/")
    assert tab.page.locator("tr[data-item=web] .badge").inner_text() == "ok"
    assert tab.errors == []


def test_failed_logins_slow_down_that_name_from_that_client(tab: Tab, dash: Dash) -> None:
    body = {"name": "tess", "role": "viewer", "password": "tess's password"}
    dash.ok("POST", "/v1/users", body)

    def attempt(user: str, password: str) -> int:
        tab.go("/ui/login")
        nonce = tab.page.locator("input[name=csrf]").get_attribute("value")
        form = {"csrf": nonce or "", "user": user, "password": password}
        reply = tab.page.request.post(dash.url + "/ui/login", form=form, max_redirects=0)
        status: int = reply.status
        return status

    assert [attempt("tess", "guess") for _ in range(5)] == [401] * 5
    assert attempt("tess", "tess's password") == 429  # even the right one, for now
    assert attempt("vic", PASSWORDS["vic"]) == 303  # other users are not locked out
