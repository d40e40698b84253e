"""What each role may do to a served vault; every refusal leaves the vault's files unchanged."""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from strongroom.errors import (
    AccessDenied,
    ObjectConflict,
    ObjectNotFound,
    RequestRefused,
    StorageError,
)
from strongroom.storage.http import HttpBackend, split_vault_url
from strongroom.storage.names import content_digest
from tests.server.conftest import MAX_UPLOAD_MIB, Runner, Served, ServedVault, tree_hash


def backend(vault: ServedVault, role: str) -> HttpBackend:
    address, name = split_vault_url(vault.url)
    return HttpBackend(address, name, vault.tokens[role])


def names(b: HttpBackend, prefix: str) -> list[str]:
    return sorted(i.name for i in b.list(prefix))


@pytest.fixture
def populated(vault: ServedVault, run: Runner, tmp_path: Path) -> ServedVault:
    """Two files points, the older forgotten (a tombstone), and a lock of another token."""
    src = tmp_path / "src"
    src.mkdir()
    backup, maint = vault.tokens["backup"], vault.tokens["maintenance"]
    for i in range(2):
        (src / f"f{i}").write_bytes(os.urandom(200_000))
        code, _, err = run(backup, "backup", "files", str(src), "--vault", vault.url)
        assert code == 0, err
    code, _, err = run(maint, "forget", "--keep-last", "1", "--vault", vault.url)
    assert code == 0, err
    backend(vault, "maintenance").put("locks/" + "ab" * 16, b"a lock of another token")
    return vault


def raw_request(url: str, method: str, path: str, token: str, body: bytes = b"") -> tuple[int, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port)
    conn.request(method, path, body=body, headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    return resp.status, text


_BIG = os.urandom((MAX_UPLOAD_MIB << 20) + 1)


def _big_name() -> str:
    return content_digest(_BIG).hex()


ATTACKS: dict[str, tuple[type[StorageError], Callable[[HttpBackend], None]]] = {
    "delete config": (AccessDenied, lambda b: b.delete("config")),
    "delete key": (AccessDenied, lambda b: b.delete(names(b, "keys/")[0])),
    "delete pack": (AccessDenied, lambda b: b.delete(names(b, "data/")[0])),
    "delete index": (AccessDenied, lambda b: b.delete(names(b, "index/")[0])),
    "delete point": (AccessDenied, lambda b: b.delete(names(b, "points/")[0])),
    "delete tombstone": (AccessDenied, lambda b: b.delete(names(b, "deleted/")[0])),
    "delete another's lock": (AccessDenied, lambda b: b.delete("locks/" + "ab" * 16)),
    "replace another's lock": (AccessDenied, lambda b: b.put("locks/" + "ab" * 16, b"mine")),
    "replace config": (AccessDenied, lambda b: b.put("config", b"{}")),
    "add key": (AccessDenied, lambda b: b.put("keys/" + "0" * 16, b"{}")),
    "write tombstone": (AccessDenied, lambda b: b.put("deleted/" + "0" * 64, b"x")),
    "replace point": (RequestRefused, lambda b: b.put(names(b, "points/")[0], b"other bytes")),
    "pack not matching its name": (
        RequestRefused,
        lambda b: b.put("data/00/00" + "1" * 62, b"some bytes"),
    ),
    "index not matching its name": (
        RequestRefused,
        lambda b: b.put("index/" + content_digest(b"a").hex(), b"b"),
    ),
    "unknown object kind": (RequestRefused, lambda b: b.put("evil", b"x")),
    "oversized upload": (
        RequestRefused,
        lambda b: b.put("data/" + _big_name()[:2] + "/" + _big_name(), _BIG),
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_backup_token_cannot_destroy(populated: ServedVault, attack: str) -> None:
    error, act = ATTACKS[attack]
    before = tree_hash(populated.path)
    b = backend(populated, "backup")
    with pytest.raises(error) as info:
        act(b)
    assert "\n" not in str(info.value) and "(HTTP 4" in str(info.value)
    assert tree_hash(populated.path) == before
    b.close()


def test_restore_token_is_read_only(populated: ServedVault) -> None:
    before = tree_hash(populated.path)
    b = backend(populated, "restore")
    data = os.urandom(1000)
    with pytest.raises(AccessDenied, match="restore token cannot write data"):
        b.put(f"data/{content_digest(data).hex()[:2]}/{content_digest(data).hex()}", data)
    with pytest.raises(AccessDenied):
        b.delete(names(b, "index/")[0])
    assert tree_hash(populated.path) == before


def test_rewrites_are_idempotent_and_replacements_refused(populated: ServedVault) -> None:
    b = backend(populated, "backup")
    point = names(b, "points/")[0]
    stored = b.get(point)
    b.put(point, stored)  # the same bytes again: fine (a retried upload)
    admin = backend(populated, "admin")
    key = names(admin, "keys/")[0]
    admin.put(key, admin.get(key))
    with pytest.raises(ObjectConflict, match="never replaced"):
        admin.put(key, b"{}")
    lock = "locks/" + "cd" * 16
    b.put(lock, b"1")
    b.put(lock, b"2")  # a holder refreshes its own lock
    b.delete(lock)
    with pytest.raises(ObjectNotFound):
        b.get(lock)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/vaults/{v}/objects/../config",
        "/v1/vaults/{v}/objects/data/../../x",
        "/v1/vaults/{v}/objects/data/%2E%2E/config",
        "/v1/vaults/{v}/objects/locks/.tmp-" + "a" * 27,
        "/v1/vaults/../objects/config",
    ],
)
def test_dot_dot_names_are_refused(populated: ServedVault, path: str) -> None:
    before = tree_hash(populated.path)
    for method in ("PUT", "DELETE", "GET"):
        status, text = raw_request(
            populated.url, method, path.format(v=populated.name), populated.tokens["admin"], b"x"
        )
        assert 400 <= status < 500, (method, status, text)
    assert tree_hash(populated.path) == before


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def forget_now(vault: ServedVault, run: Runner, tmp_path: Path) -> None:
    """A point forgotten with no soft-delete window: the next prune removes it."""
    code, _, err = run(
        vault.tokens["admin"], "settings", "--soft-delete-days", "0", "--vault", vault.url
    )
    assert code == 0, err
    code, _, err = run(
        vault.tokens["backup"], "backup", "files", str(tmp_path / "src"), "--vault", vault.url
    )
    assert code == 0, err
    code, _, err = run(
        vault.tokens["maintenance"], "forget", "--keep-last", "1", "--vault", vault.url
    )
    assert code == 0, err


def test_destructive_commands_refused_for_backup_token(
    populated: ServedVault, served: Served, run: Runner, tmp_path: Path
) -> None:
    url, backup = populated.url, populated.tokens["backup"]
    forget_now(populated, run, tmp_path)
    before = tree_hash(populated.path)
    commands = [
        ("forget", "--keep-last", "0", "--keep-daily", "0", "--vault", url),
        ("forget", "latest", "--vault", url),
        ("prune", "--vault", url),
        ("settings", "--immutable-days", "5", "--vault", url),
        ("settings", "--compression-level", "19", "--vault", url),
        ("key", "add", "--vault", url, "--new-password-file", __file__),
        ("key", "add", "--vault", url, "--new-key-file", str(tmp_path / "machine.key")),
        ("token", "create", "--role", "admin", "--server", served.url),
        ("audit", "--server", served.url),
    ]
    for argv in commands:
        code, _, err = run(backup, *argv)
        assert code == 1, (argv, err)
        line = one_line_error(err)
        assert "(HTTP 403)" in line or "no policy" in line, (argv, line)
        assert tree_hash(populated.path) == before, argv
    assert not (tmp_path / "machine.key").exists()  # no key file without its slot


def test_maintenance_token_forgets_and_prunes(
    populated: ServedVault, run: Runner, tmp_path: Path
) -> None:
    url, maint = populated.url, populated.tokens["maintenance"]
    forget_now(populated, run, tmp_path)
    code, out, err = run(maint, "prune", "--vault", url, "--grace-hours", "0", "--json")
    assert code == 0, err
    assert len(json.loads(out)["points_removed"]) == 1
    b = backend(populated, "maintenance")
    # the point forgotten with the 14-day window stays, the one forgotten without it went
    assert len(names(b, "points/")) == 2 and len(names(b, "deleted/")) == 1
    code, _, err = run(maint, "check", "--vault", url)
    assert code == 0, err


def test_point_deletion_waits_for_tombstone_and_immutability(
    populated: ServedVault, run: Runner
) -> None:
    maint, admin = backend(populated, "maintenance"), backend(populated, "admin")
    stones = {n.rpartition("/")[2] for n in names(maint, "deleted/")}
    live = next(n for n in names(maint, "points/") if n.rpartition("/")[2] not in stones)
    with pytest.raises(AccessDenied, match="no tombstone"):
        maint.delete(live)
    forgotten = "points/" + next(iter(stones))
    with pytest.raises(AccessDenied, match="soft-delete window"):
        maint.delete(forgotten)  # soft_delete_days is 14
    code, _, err = run(
        populated.tokens["admin"], "settings", "--immutable-days", "3", "--vault", populated.url
    )
    assert code == 0, err
    with pytest.raises(AccessDenied, match="immutable"):
        admin.delete(forgotten)


def test_a_body_that_never_finishes_is_cut_off(populated: ServedVault) -> None:
    parts = urlsplit(populated.url)
    name = "data/00/00" + "1" * 62
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    conn.putrequest("PUT", f"/v1/vaults/{populated.name}/objects/{name}")
    conn.putheader("Authorization", f"Bearer {populated.tokens['backup']}")
    conn.putheader("Content-Length", "1000")
    conn.endheaders()
    conn.send(b"x" * 10)  # ... and nothing more
    resp = conn.getresponse()
    assert resp.status == 408 and b"timed out" in resp.read()
    conn.close()


def test_admin_token_changes_the_compression_level(populated: ServedVault, run: Runner) -> None:
    """Not a protection: an admin's change is stored at once, with no second admin asked."""
    url, admin = populated.url, populated.tokens["admin"]
    code, out, err = run(admin, "settings", "--compression-level", "3", "--json", "--vault", url)
    assert code == 0 and json.loads(out)["compression_level"] == 3, err
    code, out, err = run(admin, "settings", "--json", "--vault", url)
    assert code == 0 and json.loads(out)["compression_level"] == 3, err
