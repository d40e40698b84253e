"""Tokens scoped to sources: each sees and writes only its sources' points and data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from strongroom.errors import AccessDenied, RequestRefused, StorageError
from strongroom.storage.http import HttpBackend, split_vault_url
from strongroom.storage.names import content_digest
from strongroom.storage.served import committing_point
from strongroom.vault import PointManifest, Vault
from strongroom.vault.envelope import MAGIC_POINT, object_name_hash, seal_object
from tests.server.conftest import PASSWORD, Runner, Served, ServedVault, new_token, tree_hash
from tests.server.test_roles import one_line_error


@dataclass
class Scoped:
    vault: ServedVault
    tokens: dict[str, str]
    points: dict[str, str]
    """source -> the id of its point"""
    src: Path


def backend(vault: ServedVault, token: str) -> HttpBackend:
    address, name = split_vault_url(vault.url)
    return HttpBackend(address, name, token)


def names(b: HttpBackend, prefix: str) -> set[str]:
    return {i.name for i in b.list(prefix)}


def point_ids(run: Runner, token: str, url: str) -> set[str]:
    code, out, err = run(token, "points", "--vault", url, "--json")
    assert code == 0, err
    return {p["id"] for p in json.loads(out)}


@pytest.fixture
def scoped(vault: ServedVault, served: Served, run: Runner, tmp_path: Path) -> Scoped:
    """Sources a and b, each backed up once with its own scoped backup token."""
    tokens = {
        f"{role}-{s}": new_token(run, served, role, "--source", s)
        for role in ("backup", "restore")
        for s in ("a", "b")
    }
    src = tmp_path / "src"
    src.mkdir()
    points = {}
    for s in ("a", "b"):
        (src / "f").write_bytes(os.urandom(100_000))
        code, out, err = run(
            tokens[f"backup-{s}"],
            "backup", "files", str(src), "--source", s, "--vault", vault.url, "--json",
        )  # fmt: skip
        assert code == 0, err
        points[s] = json.loads(out)["point"]
    return Scoped(vault, tokens, points, src)


def test_scoped_tokens_list_and_restore_their_own_sources(
    scoped: Scoped, run: Runner, tmp_path: Path
) -> None:
    url = scoped.vault.url
    assert point_ids(run, scoped.tokens["restore-a"], url) == {scoped.points["a"]}
    assert point_ids(run, scoped.tokens["backup-b"], url) == {scoped.points["b"]}
    assert point_ids(run, scoped.vault.tokens["restore"], url) == set(scoped.points.values())
    # an incremental backup of a, and a restore of it with a's restore token
    code, _, err = run(
        scoped.tokens["backup-a"], "backup", "files", str(scoped.src), "--source", "a",
        "--vault", url,
    )  # fmt: skip
    assert code == 0, err
    target = tmp_path / "out"
    code, _, err = run(
        scoped.tokens["restore-a"], "restore", "files", "latest", "--source", "a",
        "--target", str(target), "--vault", url,
    )  # fmt: skip
    assert code == 0, err
    assert (target / scoped.src.relative_to("/") / "f").read_bytes() == (
        scoped.src / "f"
    ).read_bytes()
    # a scoped client sees only its own sources' packs and index objects
    unscoped, mine = backend(scoped.vault, scoped.vault.tokens["restore"]), None
    mine = backend(scoped.vault, scoped.tokens["restore-a"])
    assert names(mine, "data/") < names(unscoped, "data/")
    assert names(mine, "index/") < names(unscoped, "index/")
    assert names(mine, "locks/") == names(unscoped, "locks/")


def _b_pack(s: Scoped) -> str:
    every = names(backend(s.vault, s.vault.tokens["restore"]), "data/")
    return sorted(every - names(backend(s.vault, s.tokens["restore-a"]), "data/"))[0]


def _batch_b_pack(s: Scoped) -> object:
    """A batch read of one of a's packs and one of b's with a's backup token."""
    mine = backend(s.vault, s.tokens["backup-a"])
    own = sorted(names(mine, "data/"))[0]
    return mine.get_ranges([(own, 0, 10), (_b_pack(s), 0, 10), (own, 10, 10)])


def _foreign_point(s: Scoped) -> bytes:
    data = os.urandom(64)
    with committing_point("b"):
        backend(s.vault, s.tokens["backup-a"]).put(f"points/{content_digest(data).hex()}", data)
    return data


REFUSALS: dict[str, tuple[type[StorageError], Callable[[Scoped], object]]] = {
    "read another source's point": (
        AccessDenied,
        lambda s: backend(s.vault, s.tokens["restore-a"]).get("points/" + s.points["b"]),
    ),
    "stat another source's point": (
        AccessDenied,
        lambda s: backend(s.vault, s.tokens["backup-a"]).stat("points/" + s.points["b"]),
    ),
    "read another source's pack": (
        AccessDenied,
        lambda s: backend(s.vault, s.tokens["backup-a"]).get_range(_b_pack(s), 0, 10),
    ),
    "read another source's pack in a batch read": (AccessDenied, _batch_b_pack),
    "commit a point for another source": (AccessDenied, _foreign_point),
    "commit a point without a source": (
        RequestRefused,
        lambda s: backend(s.vault, s.tokens["backup-a"]).put(
            "points/" + content_digest(b"x").hex(), b"x"
        ),
    ),
}


@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_scoped_refusals_change_nothing(scoped: Scoped, refusal: str) -> None:
    error, act = REFUSALS[refusal]
    before = tree_hash(scoped.vault.path)
    with pytest.raises(error) as info:
        act(scoped)
    assert "\n" not in str(info.value) and "(HTTP 4" in str(info.value)
    assert tree_hash(scoped.vault.path) == before


def test_cli_refusals_are_one_line(scoped: Scoped, run: Runner, tmp_path: Path) -> None:
    url, before = scoped.vault.url, tree_hash(scoped.vault.path)
    code, _, err = run(
        scoped.tokens["restore-a"], "restore", "files", scoped.points["b"],
        "--target", str(tmp_path / "t"), "--vault", url,
    )  # fmt: skip
    assert code == 1 and "no recovery point matches" in one_line_error(err)
    assert tree_hash(scoped.vault.path) == before
    # a's backup token committing a point of source b: refused at the commit
    code, _, err = run(
        scoped.tokens["backup-a"], "backup", "files", str(scoped.src), "--source", "b",
        "--vault", url,
    )  # fmt: skip
    line = one_line_error(err)
    assert code == 1 and "not of source 'b'" in line and "(HTTP 403)" in line
    after = tree_hash(scoped.vault.path)
    # the packs and index objects it uploaded first are unreferenced data prune removes
    assert {n: h for n, h in after.items() if n.startswith(("points", "deleted", "config"))} == {
        n: h for n, h in before.items() if n.startswith(("points", "deleted", "config"))
    }


def test_the_audit_log_names_each_commits_source(
    scoped: Scoped, served: Served, run: Runner
) -> None:
    code, out, err = run(served.admin, "audit", "--server", served.url, "--limit", "5000")
    assert code == 0, err
    for s, point in scoped.points.items():
        line = next(x for x in out.splitlines() if f"put {scoped.vault.name}/points/{point}" in x)
        token_id = scoped.tokens[f"backup-{s}"][4:20]
        assert f"{token_id}(backup)" in line and f"-> 201 source '{s}', " in line, line
        assert " 127.0.0.1 " in line


def test_only_backup_and_restore_tokens_take_sources(served: Served, run: Runner) -> None:
    code, _, err = run(
        served.admin, "token", "create", "--role", "maintenance", "--source", "a",
        "--server", served.url,
    )  # fmt: skip
    assert code == 1 and "(HTTP 400)" in one_line_error(err)


def _cli(token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STRONGROOM_TOKEN": token, "STRONGROOM_PASSWORD": PASSWORD}
    env.pop("STRONGROOM_TOKEN_FILE", None)
    return subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", *args],
        capture_output=True, text=True, check=False, timeout=60, env=env,
    )  # fmt: skip


def test_a_point_claiming_another_source_is_skipped(scoped: Scoped, tmp_path: Path) -> None:
    """a's backup token commits (as a) a newer point whose sealed manifest says b: a
    restore client must not take it for b's latest."""
    vault = Vault.open(backend(scoped.vault, scoped.tokens["backup-a"]), PASSWORD)
    a_point = vault.resolve_point(scoped.points["a"])
    lie = PointManifest(kind="files", source="b", roots=a_point.manifest.roots)
    stored = seal_object(MAGIC_POINT, vault.keys.point_key, vault.vault_id, lie.encode())
    poisoned = object_name_hash(stored)
    with committing_point("a"):
        vault.backend.put("points/" + poisoned, stored)
    vault.close()
    listing = _cli(scoped.vault.tokens["restore"], "points", "--vault", scoped.vault.url, "--json")
    assert listing.returncode == 0, listing.stderr
    assert {p["id"] for p in json.loads(listing.stdout)} == set(scoped.points.values())
    assert f"skipping recovery point {poisoned[:12]}" in listing.stderr
    shown = _cli(
        scoped.vault.tokens["restore"], "points", "--source", "b", "--vault", scoped.vault.url,
        "--json",
    )  # fmt: skip
    assert [p["id"] for p in json.loads(shown.stdout)] == [scoped.points["b"]]


def test_a_scoped_backup_after_unscoped_ones_reads_again_and_restores(
    vault: ServedVault, served: Served, run: Runner, tmp_path: Path
) -> None:
    """Source a's earlier points were written by an unscoped token: a's new scoped token sees
    those points but not their packs, so its backup stores the data again instead of
    referring to chunks it cannot read; restoring with a's restore token works."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(300_000))
    url = vault.url
    code, _, err = run(vault.tokens["backup"], "backup", "files", str(src), "--source", "a",
                       "--vault", url)  # fmt: skip
    assert code == 0, err
    backup_a = new_token(run, served, "backup", "--source", "a")
    restore_a = new_token(run, served, "restore", "--source", "a")
    code, out, err = run(backup_a, "backup", "files", str(src), "--source", "a", "--vault", url,
                         "--json")  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert (
        summary["bytes_read"] >= 300_000 and summary["bytes_added"] >= 300_000
    )  # read and stored again: the old chunks are not a's
    target = tmp_path / "out"
    code, _, err = run(restore_a, "restore", "files", "latest", "--source", "a",
                       "--target", str(target), "--vault", url)  # fmt: skip
    assert code == 0, err
    assert (target / src.relative_to("/") / "f").read_bytes() == (src / "f").read_bytes()
    code, _, err = run(vault.tokens["maintenance"], "check", "--read-data", "--vault", url)
    assert code == 0, err
