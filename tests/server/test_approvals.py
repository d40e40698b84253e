"""Lowering a protection: one admin alone may, two admins need each other."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import (
    Runner,
    Served,
    free_port,
    init_server,
    new_token,
    start_server,
    tree_hash,
)
from tests.server.test_roles import one_line_error


@pytest.fixture
def fresh(tmp_path: Path, run: Runner) -> Iterator[tuple[Served, str]]:
    """A server of its own (so the number of admin tokens is known) with one vault."""
    data = tmp_path / "server"
    admin = init_server(data)
    port = free_port()
    proc = start_server(data, port)
    served = Served(f"http://127.0.0.1:{port}", data, admin, proc)
    url = f"{served.url}/v"
    code, _, err = run(admin, "init", "--vault", url, "--kdf-memory", "1", "--kdf-time", "1")
    assert code == 0, err
    yield served, url
    proc.terminate()
    proc.wait(timeout=10)


def settings(run: Runner, token: str, url: str, *args: str) -> tuple[int, dict[str, int], str]:
    code, out, err = run(token, "settings", *args, "--vault", url, "--json")
    return code, json.loads(out) if code == 0 else {}, err


def test_the_only_admin_lowers_at_once(fresh: tuple[Served, str], run: Runner) -> None:
    served, url = fresh
    code, s, err = settings(run, served.admin, url, "--immutable-days", "5")
    assert code == 0 and s["immutable_days"] == 5, err
    code, s, err = settings(
        run, served.admin, url, "--immutable-days", "0", "--soft-delete-days", "1"
    )
    assert code == 0 and s["immutable_days"] == 0 and s["soft_delete_days"] == 1, err


def test_a_second_admin_must_approve(fresh: tuple[Served, str], run: Runner) -> None:
    served, url = fresh
    first, second = served.admin, new_token(run, served, "admin")
    vault_dir = served.vault_dir("v")
    code, s, err = settings(run, first, url, "--immutable-days", "5")  # raising: at once
    assert code == 0 and s["immutable_days"] == 5, err

    before = tree_hash(vault_dir)
    code, _, err = settings(run, first, url, "--immutable-days", "1")
    line = one_line_error(err)
    found = re.search(
        r"waiting for a second admin's approval: strongroom approve ([0-9a-f]+)$", line
    )
    assert code == 1 and found and "immutable_days 5 -> 1" in line, line
    ident = found.group(1)
    assert tree_hash(vault_dir) == before  # nothing changed yet
    # asking again is the same request
    code, _, err = settings(run, first, url, "--immutable-days", "1")
    assert code == 1 and ident in err

    code, _, err = run(first, "approve", ident, "--server", served.url)
    assert code == 1 and "cannot approve its own request (HTTP 403)" in one_line_error(err)
    assert tree_hash(vault_dir) == before
    backup = new_token(run, served, "backup")
    code, _, err = run(backup, "approve", ident, "--server", served.url)
    assert code == 1 and "(HTTP 403)" in one_line_error(err)

    code, out, err = run(second, "approvals", "list", "--server", served.url, "--json")
    assert code == 0 and [(r["id"], r["state"]) for r in json.loads(out)] == [(ident, "pending")]
    code, out, err = run(second, "approve", ident, "--server", served.url)
    assert code == 0 and "immutable_days 5 -> 1" in out, err
    code, s, err = settings(run, first, url)
    assert code == 0 and s["immutable_days"] == 1, err
    assert (vault_dir / "config-copy").read_bytes() == (vault_dir / "config").read_bytes()
    code, _, err = run(second, "approve", ident, "--server", served.url)
    assert code == 1 and "is approved (HTTP 409)" in one_line_error(err)

    # raising still needs nobody; lowering soft delete needs the second admin too
    code, s, err = settings(run, first, url, "--immutable-days", "3")
    assert code == 0 and s["immutable_days"] == 3, err
    code, _, err = settings(run, second, url, "--soft-delete-days", "2")
    ident2 = one_line_error(err).rpartition(" ")[2]
    assert code == 1 and "soft_delete_days 14 -> 2" in err
    code, _, err = run(first, "approvals", "reject", ident2, "--server", served.url)
    assert code == 0, err
    code, _, err = run(first, "approve", ident2, "--server", served.url)
    assert code == 1 and "is rejected" in err
    code, s, _ = settings(run, first, url)
    assert s["soft_delete_days"] == 14 and s["immutable_days"] == 3

    # audit: who asked, who approved
    code, out, _ = run(first, "audit", "--server", served.url, "--json")
    approved = [e for e in json.loads(out) if e["action"] == "approve" and e["status"] == 200]
    detail = f"asked by token:{first[4:20]}, approved by token:{second[4:20]}"
    assert len(approved) == 1 and approved[0]["detail"].endswith(detail)


def test_an_approval_never_reverts_a_later_change(fresh: tuple[Served, str], run: Runner) -> None:
    served, url = fresh
    first, second = served.admin, new_token(run, served, "admin")
    code, _, err = settings(run, first, url, "--soft-delete-days", "3")
    ident = one_line_error(err).rpartition(" ")[2]
    code, s, err = settings(run, second, url, "--immutable-days", "7")  # meanwhile
    assert code == 0, err
    code, _, err = run(second, "approve", ident, "--server", served.url)
    assert code == 1 and "changed since the request" in one_line_error(err)
    code, s, _ = settings(run, first, url)
    assert s == {**s, "soft_delete_days": 14, "immutable_days": 7}


def test_revoked_second_admin_means_one_admin(fresh: tuple[Served, str], run: Runner) -> None:
    served, url = fresh
    second = new_token(run, served, "admin")
    second_id = second[4:20]
    code, _, err = run(served.admin, "token", "revoke", second_id, "--server", served.url)
    assert code == 0, err
    code, s, err = settings(run, served.admin, url, "--soft-delete-days", "0")
    assert code == 0 and s["soft_delete_days"] == 0, err
