"""The audit log's batched writer: refusals are committed before their answer, allowed
requests within about a second and at shutdown; a revocation applies to the next request
although verified tokens are cached."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from strongroom.errors import AccessDenied
from strongroom.server.catalog import CATALOG_FILE
from tests.server.conftest import in_process

PACK = "data/ab/ab" + "0" * 62


def rows(data: Path) -> list[tuple[str, str, int]]:
    """The audit rows committed so far (read as another process would)."""
    with sqlite3.connect(data / CATALOG_FILE) as db:
        found = db.execute("SELECT action, object, status FROM audit ORDER BY id").fetchall()
    return [(str(a), str(o), int(s)) for a, o, s in found]


def test_a_refusal_is_in_the_log_before_its_answer(tmp_path: Path) -> None:
    with in_process(tmp_path) as served:
        backup = served.backend("backup")
        for _ in range(20):  # each refusal is committed when the client hears it
            with pytest.raises(AccessDenied):
                backup.delete(PACK)
            assert rows(tmp_path)[-1] == ("delete", PACK, 403)
        backup.close()


def test_allowed_requests_are_logged_within_seconds_and_at_shutdown(tmp_path: Path) -> None:
    with in_process(tmp_path) as served:
        backup = served.backend("backup")
        backup.list("data/")
        deadline = time.monotonic() + 5
        while ("list", "data/", 200) not in rows(tmp_path):
            assert time.monotonic() < deadline, "the allowed request was never logged"
            time.sleep(0.05)
        for _ in range(50):
            backup.list("index/")
        backup.close()
    assert rows(tmp_path).count(("list", "index/", 200)) == 50  # close committed the rest


def test_revoking_applies_to_the_next_request(tmp_path: Path) -> None:
    with in_process(tmp_path) as served:
        restore, admin = served.backend("restore"), served.backend("admin")
        restore.list("points/")  # verified and cached now
        token_id = served.tokens["restore"].split("_")[1]
        admin._client.request("DELETE", f"/v1/tokens/{token_id}")
        with pytest.raises(AccessDenied, match="was revoked"):
            restore.list("points/")
        restore.close()
        admin.close()
