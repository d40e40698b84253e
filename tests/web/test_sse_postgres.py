"""Live progress across servers: two server processes share a PostgreSQL catalog; an agent
reports to one, the browser follows the job's event stream from the other."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.control.postgres import new_database, postgres_cluster
from tests.control.test_postgres import Server
from tests.server.conftest import cli as server_cli
from tests.web.conftest import PASSWORDS, Tab, api


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server, str]]:
    root = tmp_path_factory.mktemp("pg-sse")
    with postgres_cluster() as base:
        url = new_database(base, "sse")
        made = server_cli("server", "init", "--data", str(root / "a"), "--catalog", url, "--json")
        admin = json.loads(made.stdout)["token"]
        joined = server_cli("server", "init", "--data", str(root / "b"), "--catalog", url)
        assert joined.returncode == 0, joined.stderr
        origin = time.time()
        pair = (Server(root / "a", origin), Server(root / "b", origin))
        try:
            yield pair[0], pair[1], admin
        finally:
            for s in pair:
                s.proc.terminate()
                s.proc.wait(timeout=30)


def _ok(url: str, token: str, method: str, path: str, body: Any = None) -> Any:
    status, doc = api(url, token, method, path, body)
    assert status in (200, 201), (path, status, doc)
    return doc


def test_progress_posted_to_one_server_streams_from_the_other(
    servers: tuple[Server, Server, str], browser: Any, tmp_path: Path
) -> None:
    a, b, admin = servers
    user = {"name": "olga", "role": "operator", "password": PASSWORDS["olga"]}
    _ok(a.url, admin, "POST", "/v1/users", user)
    agent = _ok(a.url, admin, "POST", "/v1/agent/register", {"name": "m1"})["token"]
    _ok(a.url, admin, "POST", "/v1/policies", {"name": "p", "vault": "v", "schedule": "yearly"})
    item = {"name": "web", "kind": "files", "machine": "m1", "targets": ["/web"], "policy": "p"}
    _ok(a.url, admin, "POST", "/v1/items", item)
    job = _ok(a.url, admin, "POST", "/v1/items/web/backup-now")["job"]

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = Tab(context.new_page(), b.url, tmp_path)
    tab.page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
    listing = context.new_page()
    try:
        tab.login("olga")
        tab.go(f"/ui/jobs/{job}")
        listing.goto(b.url + "/ui/jobs")
        row = listing.locator(f"table >> nth=0 >> tr[data-job='{job}']")
        expect(row.locator(".badge")).to_have_text("queued")
        pct = tab.page.locator(".facts .pct")
        claimed = _ok(a.url, agent, "GET", "/v1/agent/jobs")
        assert claimed["job"] == job
        expect(tab.page.locator(".facts .badge")).to_have_text("running", timeout=15_000)
        for percent in (30, 70):
            doc = {"percent": percent, "files": percent, "log": [f"at {percent} %"]}
            _ok(a.url, agent, "POST", f"/v1/agent/jobs/{job}/progress", doc)
            expect(pct).to_have_text(f"{percent} %", timeout=15_000)
            expect(row.locator(".pct")).to_have_text(f"{percent} %", timeout=15_000)
        result = {"state": "succeeded", "files": 100, "log": ["done"]}
        _ok(a.url, agent, "POST", f"/v1/agent/jobs/{job}/result", result)
        expect(pct).to_have_text("100 %", timeout=15_000)
        expect(tab.page.locator("dl.facts")).to_have_attribute("data-ended", "1")
        expect(row.locator(".badge")).to_have_text("succeeded", timeout=15_000)
        expect(listing.locator("div.live")).to_have_attribute("data-ended", "1")
        log = tab.page.locator("ol.log").inner_text()
        assert log.index("at 30 %") < log.index("at 70 %") < log.index("done")
        assert log.count("at 30 %") == 1  # each line once
        assert tab.errors == []
    finally:
        context.close()
