"""kill -9 a prune at each of its steps: the vault stays consistent, the points it keeps stay
intact, and the next prune finishes the job."""

from __future__ import annotations

from pathlib import Path

import pytest

from strongroom.storage import LocalBackend
from strongroom.vault import Vault
from strongroom.vault.forget import soft_delete
from strongroom.vault.settings import change_settings
from tests.conftest import FAST_KDF, PASSPHRASE
from tests.crash._support import checked, cli, killed, ok, open_vault, temp_files, unindexed_packs
from tests.vault.helpers import Written, random_chunks, write_point

FAILPOINTS = [
    "prune-after-points",
    "prune-after-repack",
    "repack-before-delete",  # new index written, nothing old deleted
    "prune-mid-delete@2",  # some old index objects deleted
    "pack-write",  # while writing a repacked pack
]
PRUNE = ["prune", "--grace-hours", "0", "--repack-threshold", "100%", "--json"]


def build(root: Path) -> tuple[list[Written], list[Written]]:
    """Points sharing packs; the first two are forgotten (soft delete off)."""
    from strongroom.vault import VaultSettings

    vault = Vault.init(
        LocalBackend(root), PASSPHRASE, kdf=FAST_KDF, settings=VaultSettings(pack_size=300_000)
    )
    change_settings(vault, soft_delete_days=0)
    shared = random_chunks(100, 3)
    points = [write_point(vault, shared + random_chunks(s, 6), source=f"s{s}") for s in range(5)]
    for w in points[:2]:
        soft_delete(vault, w.point, "test")
    return points[:2], points[2:]


def assert_intact(root: Path, kept: list[Written]) -> None:
    vault = open_vault(root)
    visible = {p.point_id for p in vault.points()}
    assert {w.point.point_id for w in kept} <= visible
    for w in kept:
        for cid, data in w.chunks.items():
            assert vault.read_chunk(cid) == data


@pytest.mark.slow
@pytest.mark.parametrize("failpoint", FAILPOINTS)
def test_kill_prune(tmp_path: Path, failpoint: str) -> None:
    root = tmp_path / "vault"
    gone, kept = build(root)
    killed(cli(root, *PRUNE, failpoint=failpoint))

    checked(root)
    assert_intact(root, kept)
    after_crash = write_point(open_vault(root), random_chunks(200, 4), source="next")
    kept.append(after_crash)
    doc = ok(cli(root, *PRUNE)).json()
    removed = doc["points_removed"]
    assert isinstance(removed, list)
    assert set(removed) <= {w.point.point_id for w in gone}
    report = checked(root)
    assert not report.problems, report.problems
    assert not temp_files(root) and not unindexed_packs(root)
    assert_intact(root, kept)
    vault = open_vault(root)
    assert {p.point_id for p in vault.points(include_deleted=True)} == {
        w.point.point_id for w in kept
    }
    assert len(list(vault.backend.list("index/"))) <= 3
    again = ok(cli(root, *PRUNE)).json()
    assert again["index_objects_written"] == 0 and again["bytes_freed"] == 0


@pytest.mark.slow
def test_kill_repair_then_repair_again(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    _, kept = build(root)
    pack = max(
        (p for p in (root / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    pack.write_bytes(pack.read_bytes()[:-10])  # a truncated header: salvaged from the index
    killed(cli(root, "check", "--repair", failpoint="repair-after-index"))
    assert pack.exists()  # nothing old was deleted before the crash
    again = cli(root, "check", "--repair", "--json")
    assert again.code == 0, again.err
    assert not pack.exists()
    report = checked(root)
    assert not [p for p in report.problems if p.severity == "error"]
    assert_intact(root, kept)
