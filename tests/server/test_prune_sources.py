"""Prune through a server keeps scoped tokens' data readable: repacked packs and the new
index objects are recorded for the sources of the packs their chunks came from."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from strongroom.errors import AccessDenied
from strongroom.storage.http import HttpBackend, split_vault_url
from strongroom.storage.names import content_digest
from strongroom.storage.served import storing_for
from tests.server.conftest import Runner, Served, ServedVault, new_token, tree_hash

SOURCES = ("a", "b")


def backend(vault: ServedVault, token: str) -> HttpBackend:
    address, name = split_vault_url(vault.url)
    return HttpBackend(address, name, token)


def backup(run: Runner, token: str, src: Path, source: str, url: str) -> str:
    code, out, err = run(
        token, "backup", "files", str(src), "--source", source, "--vault", url, "--json"
    )
    assert code == 0, err
    point: str = json.loads(out)["point"]
    return point


def test_scoped_tokens_restore_after_a_prune_that_repacked(
    vault: ServedVault, served: Served, run: Runner, tmp_path: Path
) -> None:
    url, maint = vault.url, vault.tokens["maintenance"]
    code, _, err = run(vault.tokens["admin"], "settings", "--soft-delete-days", "0", "--vault", url)
    assert code == 0, err
    tokens = {
        f"{role}-{s}": new_token(run, served, role, "--source", s)
        for role in ("backup", "restore")
        for s in SOURCES
    }
    first = []
    for s in SOURCES:  # two points per source; the first one's pack is half dead once forgotten
        src = tmp_path / f"src-{s}"
        src.mkdir()
        (src / "gone").write_bytes(os.urandom(300_000))
        (src / "kept").write_bytes(os.urandom(300_000))
        first.append(backup(run, tokens[f"backup-{s}"], src, s, url))
        (src / "gone").unlink()
        (src / "new").write_bytes(os.urandom(200_000))
        backup(run, tokens[f"backup-{s}"], src, s, url)
    code, _, err = run(maint, "forget", *first, "--vault", url)
    assert code == 0, err
    code, out, err = run(maint, "prune", "--vault", url, "--grace-hours", "0", "--json")
    assert code == 0, err
    assert json.loads(out)["packs_repacked"] >= 2, out

    for s in SOURCES:
        target = tmp_path / f"restored-{s}"
        code, _, err = run(
            tokens[f"restore-{s}"], "restore", "files", "latest", "--source", s,
            "--target", str(target), "--vault", url,
        )  # fmt: skip
        assert code == 0, err
        src = tmp_path / f"src-{s}"
        assert tree_hash(target / src.relative_to("/")) == tree_hash(src)
    # no pack or index object prune wrote serves both sources: each sees only its own
    listed = {s: backend(vault, tokens[f"restore-{s}"]) for s in SOURCES}
    seen = {s: {i.name for p in ("data/", "index/") for i in b.list(p)} for s, b in listed.items()}
    assert seen["a"] and seen["b"] and not seen["a"] & seen["b"]
    code, _, err = run(maint, "check", "--read-data", "--vault", url)
    assert code == 0, err


def test_only_maintenance_and_admin_name_the_sources_of_a_pack(
    vault: ServedVault, served: Served, run: Runner
) -> None:
    scoped = new_token(run, served, "backup", "--source", "a")
    data = os.urandom(1000)
    name = f"data/{content_digest(data).hex()[:2]}/{content_digest(data).hex()}"
    for token in (vault.tokens["backup"], scoped):
        with storing_for(("b",)), pytest.raises(AccessDenied, match="cannot name the sources"):
            backend(vault, token).put(name, data)
    with storing_for(("b",)):
        backend(vault, vault.tokens["maintenance"]).put(name, data)
    b_token = new_token(run, served, "restore", "--source", "b")
    assert backend(vault, b_token).get(name) == data
    a_token = new_token(run, served, "restore", "--source", "a")
    with pytest.raises(AccessDenied):
        backend(vault, a_token).get(name)
