"""``strongroom user add`` through the API, and the catalog migration that adds users."""

from __future__ import annotations

from pathlib import Path

from strongroom.server.catalog import SCHEMA_VERSION, Catalog
from tests.web.conftest import Dash, api, user_add


def test_user_add_refuses_bad_input_with_one_line(dash: Dash, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("a long enough password\n")
    cases = {
        ("alice", "admin"): "exists already",
        ("bob", "king"): "unknown role 'king'",
        ("b/ob", "viewer"): "invalid user name",
    }
    for (name, role), why in cases.items():
        done = user_add(dash.url, dash.admin, name, role, pw)
        assert done.returncode == 1 and why in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    short = tmp_path / "short"
    short.write_text("short\n")
    done = user_add(dash.url, dash.admin, "bob", "viewer", short)
    assert done.returncode == 1 and "8 to 1024 characters" in done.stderr
    done = user_add(dash.url, dash.admin, "bob", "viewer", tmp_path / "missing")
    assert done.returncode == 1 and "cannot read the password file" in done.stderr


def test_only_an_admin_token_adds_users(dash: Dash) -> None:
    status, made = api(dash.url, dash.admin, "POST", "/v1/tokens", {"role": "maintenance"})
    assert status == 201
    body = {"name": "mallory", "role": "admin", "password": "a long password"}
    status, doc = api(dash.url, made["token"], "POST", "/v1/users", body)
    assert status == 403 and "cannot add dashboard users" in doc["error"]


def test_an_older_catalog_gains_the_users_table(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path, create=True)
    with catalog.tx() as db:
        db.execute("DROP TABLE users")
        db.execute("DROP TABLE sessions")
    catalog.set_meta("schema", "3")
    catalog.close()
    reopened = Catalog(tmp_path)
    assert reopened.meta("schema") == str(SCHEMA_VERSION) == "9"
    with reopened.read() as db:
        assert db.execute("SELECT count(*) FROM users").fetchone() == (0,)
    reopened.close()
