"""Every state-changing dashboard route, taken from the app's own route table (a new route is
covered without touching this file): a viewer is refused with 403 and changes nothing, and a
POST without the session's CSRF token, or with a wrong one, is refused with 403 for every
role.  A real server (the ``dash`` fixture) over HTTP with the session cookie."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from strongroom.server.app import Server, create_app
from strongroom.server.catalog import Catalog
from tests.web.conftest import PASSWORDS, Dash
from tests.web.http_session import HttpSession

EVERYONE_MAY = {"/ui/logout"}
"""A viewer may end its own session (it still needs its CSRF token)."""
OWN_CSRF = {"/ui/login"}
"""Before a session exists: a double-submitted cookie instead (tested below)."""
OWN_STATE = ("audit", "sessions", "vault_usage", "meta", "token_addresses", "control_marks")
"""Tables a refused request may change (its audit row) or the server changes on its own (the
usage sampler; the upkeep that reads the audit log for each token's addresses)."""
FORM = {
    "role": "admin",
    "label": "forged",
    "name": "forged",
    "vault": "v",
    "schedule": "hourly",
    "kind": "files",
    "machine": "m1",
    "targets": "/",
    "policy": "nightly",
    "keep_last": "1",
    "quota": "1",
    "soft_delete_days": "0",
    "immutable_days": "0",
    "what": "files",
    "paths": "/",
    "target": "/tmp/forged",
    "path": "/",
    "format": "file",
}
"""Fields that would make each route do something, were it allowed."""


@pytest.fixture(scope="module")
def posts(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The path of every dashboard POST route, from the app's route table."""
    data = tmp_path_factory.mktemp("routes")
    Catalog(data, create=True).close()
    server = Server(data)
    try:
        app = create_app(server)
    finally:
        server.close()
    found = [
        r.path
        for r in app.routes
        if isinstance(r, APIRoute) and "POST" in (r.methods or ()) and r.path.startswith("/ui/")
    ]
    assert {
        "/ui/tokens",
        "/ui/vaults/{name}/settings",
        "/ui/approvals/{approval_id}/approve",
    } <= set(found)
    return sorted(found)


def concrete(path: str, dash: Dash) -> str:
    """Real names where the fixture has them (a refusal must come before any lookup)."""
    names = {
        "item": "site",
        "point": "0123456789abcdef",
        "job_id": str(dash.queued["site"]),
        "token_id": dash.admin.split("_")[1],
        "approval_id": "0123456789abcdef",
    }
    if path.startswith("/ui/vaults/"):
        names["name"] = "v"
    elif path.startswith("/ui/policies/"):
        names["name"] = "nightly"
    elif path.startswith("/ui/items/"):
        names["name"] = "site"
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: names.get(m.group(1), "x"), path)


def state(data: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(data / "catalog.sqlite") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
            for t in tables
            if t not in OWN_STATE
        }


def test_a_viewer_is_refused_every_write_and_changes_nothing(posts: list[str], dash: Dash) -> None:
    viewer = HttpSession(dash.url, "vic", PASSWORDS["vic"])
    before = state(dash.data)
    for path in posts:
        if path in EVERYONE_MAY | OWN_CSRF:
            continue
        status, page = viewer.post(concrete(path, dash), FORM)
        assert status == 403 and "a viewer may not" in page, (path, status, page[:300])
    assert state(dash.data) == before


def test_every_write_needs_the_csrf_token(posts: list[str], dash: Dash) -> None:
    before = state(dash.data)
    for user in ("alice", "olga", "vic"):
        who = HttpSession(dash.url, user, PASSWORDS[user])
        for path in posts:
            if path in OWN_CSRF:
                continue
            for csrf in ("", "not-the-token"):
                status, page = who.post(concrete(path, dash), FORM, csrf=csrf)
                assert status == 403 and "CSRF" in page, (user, path, csrf, status)
    assert state(dash.data) == before


def test_a_login_needs_its_form_nonce(dash: Dash) -> None:
    who = HttpSession(dash.url, "vic", PASSWORDS["vic"])  # a cookie jar with a login nonce
    for nonce in ("", "not-the-nonce"):
        form = {"user": "vic", "password": PASSWORDS["vic"]}
        status, page = who.post("/ui/login", form, csrf=nonce)
        assert status == 403 and "expired" in page
