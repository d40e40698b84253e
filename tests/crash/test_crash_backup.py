"""kill -9 a files backup and an image backup at chosen points.

After each crash: the vault opens, check (reading all data) is clean, every committed point
restores bit-identically, a later prune reclaims what the crash left, and the next backup works.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.crash._support import (
    checked,
    cli,
    file_digest,
    init_vault,
    killed,
    make_disk,
    make_tree,
    ok,
    open_vault,
    restored_tree,
    snapshot_tree,
    temp_files,
    unindexed_packs,
)


def point_of(doc: dict[str, object]) -> str:
    """The new point's id in a backup's JSON (files say "point", images "point_id")."""
    return str(doc.get("point") or doc["point_id"])


# pack-write@2: the first pack of the backup is complete, the second half written.
FAILPOINTS = ["pack-write@2", "after-packs", "after-index"]


def reclaim(vault: Path, failpoint: str) -> None:
    """Prune (no grace) removes what the crash left: temp files, orphan or unneeded packs."""
    before = sum(p.stat().st_size for p in (vault / "data").rglob("*") if p.is_file())
    leftovers = len(temp_files(vault)) + len(unindexed_packs(vault))
    doc = ok(cli(vault, "prune", "--grace-hours", "0", "--json")).json()
    after = sum(p.stat().st_size for p in (vault / "data").rglob("*") if p.is_file())
    assert not temp_files(vault) and not unindexed_packs(vault)
    if failpoint == "after-index":  # indexed but unreferenced: dead chunks, collected
        assert after < before and doc["packs_deleted"]
    else:
        assert leftovers and after < before


@pytest.mark.slow
@pytest.mark.parametrize("failpoint", FAILPOINTS)
def test_kill_files_backup(tmp_path: Path, failpoint: str) -> None:
    vault, src = tmp_path / "vault", tmp_path / "src"
    init_vault(vault)
    make_tree(src, seed=1)
    first = ok(cli(vault, "backup", "files", str(src), "--source", "s", "--json")).json()
    first_tree = snapshot_tree(src)
    make_tree(src, seed=2, files=10)  # about 2 MiB of new data: several 1 MiB packs
    killed(cli(vault, "backup", "files", str(src), "--source", "s", failpoint=failpoint))

    checked(vault)
    assert [p.point_id for p in open_vault(vault).points()] == [point_of(first)]
    got = restored_tree(vault, point_of(first), src, tmp_path / "r1")
    assert got == first_tree
    reclaim(vault, failpoint)
    checked(vault)
    second = ok(cli(vault, "backup", "files", str(src), "--source", "s", "--json")).json()
    got = restored_tree(vault, point_of(second), src, tmp_path / "r2")
    assert got == snapshot_tree(src)
    assert not checked(vault).problems


@pytest.mark.slow
@pytest.mark.parametrize("failpoint", FAILPOINTS)
def test_kill_image_backup(tmp_path: Path, failpoint: str) -> None:
    vault, disk = tmp_path / "vault", tmp_path / "disk.raw"
    init_vault(vault)
    make_disk(disk, seed=1)
    first_digest = file_digest(disk)
    args = ["backup", "disk", str(disk), "--format", "raw", "--chunk-size", "64K", "--json"]
    first = ok(cli(vault, *args)).json()
    make_disk(disk, seed=2)  # new data in other regions
    killed(cli(vault, *args[:-1], failpoint=failpoint))

    checked(vault)
    assert [p.point_id for p in open_vault(vault).points()] == [point_of(first)]
    out = tmp_path / "r1.raw"
    ok(cli(vault, "restore", "disk", point_of(first), "--to", str(out), "-f", "raw"))
    assert file_digest(out) == first_digest
    reclaim(vault, failpoint)
    second = ok(cli(vault, *args)).json()
    out2 = tmp_path / "r2.raw"
    ok(cli(vault, "restore", "disk", point_of(second), "--to", str(out2), "-f", "raw"))
    assert file_digest(out2) == file_digest(disk)
    assert not checked(vault).problems
