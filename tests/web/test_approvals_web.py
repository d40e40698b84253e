"""Dashboard admin users in second-admin approvals, end to end: a real server, a real agent
holding the passphrase (it signs the settings the dashboard asks for), two admin users, an
operator and a viewer, over HTTP with the session cookie and the CSRF token."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.control.conftest import Control, cli, ok, wait_for
from tests.server.conftest import free_port, init_server
from tests.web.conftest import api, user_add
from tests.web.http_session import HttpSession

PASSWORDS = {
    "alice": "alice's long password",
    "bob": "bob's long password",
    "olga": "operator password",
    "vic": "viewer pw!",
}
ROLES = {"alice": "admin", "bob": "admin", "olga": "operator", "vic": "viewer"}


@dataclass
class Rig:
    control: Control
    vault: str

    @property
    def url(self) -> str:
        return self.control.url

    @property
    def admin(self) -> str:
        return self.control.admin


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("approvals")
    c = Control(root / "data", free_port(), init_server(root / "data"), time.time())
    c.start()
    try:
        for name, role in ROLES.items():
            pw = root / f"{name}.pw"
            pw.write_text(PASSWORDS[name] + "\n")
            assert user_add(c.url, c.admin, name, role, pw).returncode == 0
        vault = f"{c.url}/main"
        ok(c.admin, "init", "--vault", vault, "--kdf-memory", "1", "--kdf-time", "1")
        c.register("web01", root / "web01")
        c.admin_json("policy", "create", "yearly", "--vault", "main", "--schedule", "yearly")
        (root / "site").mkdir()
        site = str(root / "site")
        c.admin_json("protect", "files", "web01", site, "--name", "site", "--policy", "yearly")
        c.start_agent("web01", root / "web01")
        yield Rig(c, vault)
    finally:
        for machine in list(c.agents):
            c.stop_agent(machine)
        c.stop()


def login(url: str, user: str) -> HttpSession:
    return HttpSession(url, user, PASSWORDS[user])


def settings(rig: Rig) -> dict[str, Any]:
    """The vault's plain settings, as stored (and its copy alike)."""
    with sqlite3.connect(rig.control.data / "catalog.sqlite") as db:
        row = db.execute("SELECT location FROM vaults WHERE name = 'main'").fetchone()
    where = Path(str(row[0]).removeprefix("file://"))
    raw = (where / "config").read_bytes()
    assert (where / "config-copy").read_bytes() == raw
    found: dict[str, Any] = json.loads(raw)["settings"]
    return found


def approval(rig: Rig, ident: str) -> dict[str, Any]:
    rows = api(rig.url, rig.admin, "GET", "/v1/approvals")[1]["approvals"]
    return next(r for r in rows if r["id"] == ident)


def change(who: HttpSession, **days: int) -> tuple[int, str]:
    """The settings form; the first time, until the agent has polled the relay."""
    fields = {k: str(v) for k, v in days.items()}
    found: list[tuple[int, str]] = []

    def sent() -> bool:
        found[:] = [who.post("/ui/vaults/main/settings", fields)]
        return found[0][0] != 409 or "no online agent" not in found[0][1]

    wait_for("the agent on the relay", sent, 60)
    return found[0]


def pending_id(page: str) -> str:
    found = re.search(r"approval \(request ([0-9a-f]+)\)", page)
    assert found is not None, page
    return found.group(1)


def audit(rig: Rig) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = api(rig.url, rig.admin, "GET", "/v1/audit?limit=1000")[1][
        "entries"
    ]
    return rows


def test_a_dashboard_request_waits_for_another_admin_user(rig: Rig) -> None:
    alice, bob = login(rig.url, "alice"), login(rig.url, "bob")
    status, page = change(alice, soft_delete_days=30)  # raising: at once
    assert status == 200 and settings(rig)["soft_delete_days"] == 30, page
    status, page = change(alice, soft_delete_days=7)
    assert status == 202 and "soft_delete_days 30 -&gt; 7" in page, page
    ident = pending_id(page)
    assert settings(rig)["soft_delete_days"] == 30
    assert approval(rig, ident)["requested_by"] == "user:alice"

    status, page = alice.post(f"/ui/approvals/{ident}/approve", {})
    assert status == 403 and "cannot approve its own request" in page
    for user in ("olga", "vic"):
        status, page = login(rig.url, user).post(f"/ui/approvals/{ident}/approve", {})
        assert status == 403 and "may not approve" in page, (user, page)
    status, page = bob.post(f"/ui/approvals/{ident}/approve", {}, csrf="")
    assert status == 403 and "CSRF" in page
    assert approval(rig, ident)["state"] == "pending" and settings(rig)["soft_delete_days"] == 30

    status, page = bob.post(f"/ui/approvals/{ident}/approve", {})
    assert status == 200 and "Approved: main: soft_delete_days 30 -&gt; 7" in page
    assert settings(rig)["soft_delete_days"] == 7
    row = approval(rig, ident)
    assert (row["state"], row["decided_by"]) == ("approved", "user:bob")
    details = [(e["action"], e["status"], e["detail"]) for e in audit(rig)]
    assert (
        "ui-vault-settings",
        202,
        f"user alice: main: soft_delete_days 30 -> 7: approval {ident} pending",
    ) in details
    assert (
        "ui-approve",
        200,
        f"user bob: approval {ident}: main: soft_delete_days 30 -> 7, asked by user:alice, "
        "approved by user:bob",
    ) in details


def test_an_admin_token_request_is_approved_by_a_dashboard_admin(rig: Rig) -> None:
    """The first admin token is no longer the only admin: the users count."""
    done = cli(rig.admin, "settings", "--soft-delete-days", "3", "--vault", rig.vault)
    found = re.search(r"strongroom approve ([0-9a-f]+)", done.stderr)
    assert done.returncode == 1 and found, done.stderr
    ident = found.group(1)
    assert approval(rig, ident)["requested_by"].startswith("token:")
    status, page = login(rig.url, "bob").post(f"/ui/approvals/{ident}/approve", {})
    assert status == 200, page
    assert settings(rig)["soft_delete_days"] == 3
    assert approval(rig, ident)["decided_by"] == "user:bob"


def test_a_token_an_admin_user_created_is_that_admin(rig: Rig) -> None:
    """The strict reading: alice's own token neither approves her request nor has her approve
    its request; bob does both."""
    alice, bob = login(rig.url, "alice"), login(rig.url, "bob")
    status, page = alice.post("/ui/tokens", {"role": "admin", "label": "alice's"})
    own = re.search(r'id="new-token"[^>]*>([^<]+)<', page)
    assert status == 200 and own, page
    token = own.group(1).strip()
    status, page = change(alice, soft_delete_days=2)
    assert status == 202, page
    ident = pending_id(page)
    status, doc = api(rig.url, token, "POST", f"/v1/approvals/{ident}")
    assert status == 403 and "created by user:alice, who made the request" in doc["error"]
    status, _ = bob.post(f"/ui/approvals/{ident}/approve", {})
    assert status == 200 and settings(rig)["soft_delete_days"] == 2

    done = cli(token, "settings", "--soft-delete-days", "1", "--vault", rig.vault)
    found = re.search(r"strongroom approve ([0-9a-f]+)", done.stderr)
    assert done.returncode == 1 and found, done.stderr
    status, page = alice.post(f"/ui/approvals/{found.group(1)}/approve", {})
    assert status == 403 and "a token you created" in page
    status, _ = bob.post(f"/ui/approvals/{found.group(1)}/reject", {})
    assert status == 200 and settings(rig)["soft_delete_days"] == 2


def test_bad_settings_forms_are_refused(rig: Rig) -> None:
    alice = login(rig.url, "alice")
    for fields in ({}, {"soft_delete_days": "-1"}, {"immutable_days": "x"}):
        status, page = alice.post("/ui/vaults/main/settings", fields)
        assert status == 400, (fields, page)
    status, _ = alice.post("/ui/vaults/nope/settings", {"soft_delete_days": "1"})
    assert status == 404
    for user in ("olga", "vic"):
        status, _ = login(rig.url, user).post("/ui/vaults/main/settings", {"soft_delete_days": "0"})
        assert status == 403
    assert settings(rig)["soft_delete_days"] == 2


def test_the_only_admin_changes_settings_at_once(rig: Rig) -> None:
    """As with one admin token: nobody else could approve, so nobody is asked (last in this
    module: it leaves alice the only admin)."""
    with sqlite3.connect(rig.control.data / "catalog.sqlite") as db:
        db.execute("UPDATE users SET role = 'viewer' WHERE name = 'bob'")
    alice = login(rig.url, "alice")
    status, page = change(alice, soft_delete_days=1)
    assert status == 202, page  # the first admin token could still approve
    for row in api(rig.url, rig.admin, "GET", "/v1/tokens")[1]["tokens"]:
        if row["role"] == "admin" and row["revoked"] is None:  # alice's own token too
            status, page = alice.post(f"/ui/tokens/{row['id']}/revoke", {})
            assert status in (200, 303), page
    status, page = change(alice, soft_delete_days=0)
    assert status == 200 and "main: soft_delete_days 0." in page, page
    assert settings(rig)["soft_delete_days"] == 0
