"""A real server (``strongroom server run`` in a subprocess) with dashboard users, an item whose
backup failed, queued jobs, and real headless Chromium driven by playwright."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.control.conftest import env, wait_for
from tests.server.conftest import free_port, init_server

playwright_sync = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORDS = {"alice": "alice's long password", "olga": "operator password", "vic": "viewer pw!"}
ROLES = {"alice": "admin", "olga": "operator", "vic": "viewer"}


def api(url: str, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as reply:
            raw = reply.read()
            return reply.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def user_add(
    url: str, token: str, name: str, role: str, pw: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "strongroom.cli.main",
            "user",
            "add",
            name,
            "--role",
            role,
            "--password-file",
            str(pw),
            "--server",
            url,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env(STRONGROOM_TOKEN=token),
    )


@dataclass
class Dash:
    url: str
    data: Path
    admin: str
    failed_job: int
    queued: dict[str, int] = field(default_factory=dict)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return api(self.url, self.admin, method, path, body)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, doc = self.call(method, path, body)
        assert status in (200, 201), (path, status, doc)
        return doc


def _fail_a_backup(url: str, admin: str) -> int:
    """A real agent's token claims the item's job and reports it failed."""
    status, agent = api(url, admin, "POST", "/v1/agent/register", {"name": "m1"})
    assert status == 201, agent
    policy = {"name": "nightly", "vault": "v", "schedule": "02:00", "grace": 600}
    for path, body in (
        ("/v1/policies", policy),
        (
            "/v1/items",
            {
                "name": "site",
                "kind": "files",
                "machine": "m1",
                "targets": ["/srv"],
                "policy": "nightly",
            },
        ),
        (
            "/v1/items",
            {
                "name": "db",
                "kind": "files",
                "machine": "m1",
                "targets": ["/db"],
                "policy": "nightly",
            },
        ),
        ("/v1/items/site/backup-now", None),
    ):
        status, doc = api(url, admin, "POST", path, body)
        assert status == 201, (path, doc)
    status, job = api(url, agent["token"], "GET", "/v1/agent/jobs")
    assert status == 200 and job["item"] == "site", job
    job_id = int(job["job"] if "job" in job else job["id"])
    result = {"state": "failed", "reason": "disk full", "log": ["reading /srv", "disk full"]}
    status, doc = api(url, agent["token"], "POST", f"/v1/agent/jobs/{job_id}/result", result)
    assert status == 200 and doc["state"] == "failed", doc
    return job_id


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    root = tmp_path_factory.mktemp("dash")
    data, port = root / "data", free_port()
    admin = init_server(data)
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strongroom.cli.main",
            "server",
            "run",
            "--data",
            str(data),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        env=env(),
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            "the server",
            lambda: api(url, admin, "GET", "/v1/health")[0] == 200 if _up(url) else False,
            30,
        )
        for name, role in ROLES.items():
            pw = root / f"{name}.pw"
            pw.write_text(PASSWORDS[name] + "\n")
            done = user_add(url, admin, name, role, pw)
            assert done.returncode == 0, done.stderr
        made = Dash(url, data, admin, _fail_a_backup(url, admin))
        for item in ("site", "db"):
            made.queued[item] = int(made.ok("POST", f"/v1/items/{item}/backup-now")["job"])
        yield made
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _up(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/v1/health", timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh)")
    with playwright_sync.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Tab:
    """A page in its own browser context, with every console error and page error it saw."""

    page: Any
    url: str
    shots: Path
    errors: list[str] = field(default_factory=list)

    def go(self, path: str) -> None:
        self.page.goto(self.url + path)

    def login(self, user: str) -> None:
        self.go("/ui/login")
        self.page.get_by_label("User name").fill(user)
        self.page.get_by_label("Password").fill(PASSWORDS[user])
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(self.url + "/")

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def csrf(self) -> str:
        value: str = self.page.locator("form.logout input[name=csrf]").get_attribute("value")
        return value


@pytest.fixture
def tab(browser: Any, dash: Dash, tmp_path: Path) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    made = Tab(page, dash.url, tmp_path / "screenshots")
    made.shots.mkdir()
    page.on("console", lambda m: made.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: made.errors.append(str(exc)))
    yield made
    context.close()
