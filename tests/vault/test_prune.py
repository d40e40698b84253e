"""Prune: what it removes, what it keeps (live, soft-deleted, young, immutable), and refusals."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from strongroom.errors import RepairNeeded
from strongroom.storage import LocalBackend, MemoryBackend
from strongroom.vault import Vault, check_vault
from strongroom.vault.forget import soft_delete
from strongroom.vault.prune import PruneOptions, prune
from strongroom.vault.settings import change_settings
from strongroom.vault.tombstones import Tombstone
from tests.conftest import PASSPHRASE
from tests.vault.helpers import Written, random_chunks, write_point

NOW = PruneOptions(grace_seconds=0)


def names(vault: Vault) -> set[str]:
    return {i.name for i in vault.backend.list() if not i.name.startswith("locks/")}


def assert_intact(vault: Vault, *kept: Written) -> None:
    reopened = Vault.open(vault.backend, PASSPHRASE)
    report = check_vault(reopened, read_data=True)
    assert report.ok and not report.problems, report.problems
    for w in kept:
        for cid, data in w.chunks.items():
            assert reopened.read_chunk(cid) == data


@pytest.fixture
def vault(tmp_path: Path, make_vault: Callable[..., Vault]) -> Vault:
    v: Vault = make_vault(LocalBackend(tmp_path / "v"), pack_size=150_000)
    change_settings(v, soft_delete_days=0)
    return v


def test_prune_collects_what_no_point_needs(vault: Vault) -> None:
    shared = random_chunks(1, 4)
    a = write_point(vault, shared + random_chunks(2, 8), source="a")
    b = write_point(vault, shared + random_chunks(3, 8), source="b")
    before = sum(i.size for i in vault.backend.list("data/"))
    soft_delete(vault, a.point, "test")
    report = prune(vault, PruneOptions(grace_seconds=0, repack_threshold=1.0))
    assert report.points_removed == [a.point.point_id]
    assert report.packs_deleted + report.packs_repacked > 0
    assert report.chunks_live == len(b.chunks) + 1  # b's chunks and its tree
    after = sum(i.size for i in vault.backend.list("data/"))
    assert after < before * 0.7
    only_a = [cid for cid in a.chunks if cid not in b.chunks]
    assert all(cid not in vault.index for cid in only_a)
    assert_intact(vault, b)
    again = prune(vault, NOW)
    assert again.index_objects_written == 0 and again.chunks_live == report.chunks_live


def test_repack_threshold_and_budget(vault: Vault) -> None:
    # One pack mixing two points' chunks: forgetting one leaves it about half live.
    writer = vault.writer()
    datas = random_chunks(4, 6, 16_000)
    ids = [writer.put(d).chunk_id for d in datas]
    keep_root = vault.put_tree(writer, ids[::2], b"keep")
    drop_root = vault.put_tree(writer, ids[1::2], b"drop")
    writer.flush()
    writer.close()
    from strongroom.vault import PointManifest

    vault.save_point(PointManifest(kind="files", source="k", roots=[keep_root.hex()]))
    dropped = vault.save_point(PointManifest(kind="files", source="d", roots=[drop_root.hex()]))
    soft_delete(vault, dropped, "test")
    snapshot = names(vault)
    plan = prune(vault, PruneOptions(grace_seconds=0, repack_threshold=0.0, dry_run=True))
    assert plan.packs_repacked == 0 and names(vault) == snapshot
    tight = prune(vault, PruneOptions(grace_seconds=0, max_repack_bytes=10, dry_run=True))
    assert tight.packs_repacked == 0
    report = prune(vault, PruneOptions(grace_seconds=0, repack_threshold=0.9))
    assert report.packs_repacked == 1 and report.packs_written == 1
    assert 0 < report.bytes_written < report.bytes_repacked
    kept = Written(vault.points()[0], dict(zip(ids[::2], datas[::2], strict=True)))
    assert_intact(vault, kept)


def test_grace_period_protects_young_packs_and_orphans(make_vault: Callable[..., Vault]) -> None:
    backend = MemoryBackend()
    vault = make_vault(backend, pack_size=100_000)
    change_settings(vault, soft_delete_days=0)
    a = write_point(vault, random_chunks(5, 6), source="a")
    writer = vault.writer()
    for d in random_chunks(6, 4):  # stored, never committed: what a crashed backup leaves
        writer.put(d)
    writer.flush()
    writer.close()
    soft_delete(vault, a.point, "test")
    snapshot = names(vault)
    young = prune(vault, PruneOptions(grace_seconds=3600))
    assert young.packs_deleted == young.orphan_packs == 0
    assert young.packs_young > 0
    packs = {n for n in snapshot if n.startswith("data/")}
    assert {n for n in names(vault) if n.startswith("data/")} == packs
    for info in backend.list("data/"):
        backend.set_mtime(info.name, time.time() - 7200)
    old = prune(vault, PruneOptions(grace_seconds=3600))
    assert old.packs_deleted > 0
    assert not list(backend.list("data/"))
    assert_intact(vault)


def test_orphan_packs_are_reclaimed(vault: Vault) -> None:
    kept = write_point(vault, random_chunks(7, 4), source="k")
    index_before = {i.name for i in vault.backend.list("index/")}
    writer = vault.writer()
    for d in random_chunks(8, 6):
        writer.put(d)
    writer.flush()
    writer.close()
    for name in {i.name for i in vault.backend.list("index/")} - index_before:
        vault.backend.delete(name)  # packs without an index object: a crash before the index
    report = prune(Vault.open(vault.backend, PASSPHRASE), NOW)
    assert report.orphan_packs > 0 and report.orphan_bytes > 0
    assert_intact(vault, kept)


def test_dry_run_changes_nothing(vault: Vault) -> None:
    a = write_point(vault, random_chunks(9, 6), source="a")
    soft_delete(vault, a.point, "test")
    snapshot = names(vault)
    report = prune(vault, PruneOptions(grace_seconds=0, dry_run=True))
    assert report.dry_run and report.points_removed == [a.point.point_id]
    assert report.bytes_freed > 0
    assert names(vault) == snapshot


def test_expired_tombstone_of_an_immutable_point_is_kept(vault: Vault) -> None:
    a = write_point(vault, random_chunks(10, 3), source="a")
    soft_delete(vault, a.point, "before the lock")
    change_settings(vault, immutable_days=30)
    report = prune(vault, NOW)
    assert report.points_removed == [] and report.points_soft_deleted == 1
    assert_intact(vault, a)


def test_dangling_tombstones_are_removed(vault: Vault) -> None:
    stone = Tombstone.new("ab" * 32, 0, "no such point")
    vault.backend.put(stone.name, stone.seal(vault.keys, vault.vault_id))
    write_point(vault, random_chunks(11, 2), source="a")
    assert prune(vault, NOW).tombstones_removed == 1
    assert not list(vault.backend.list("deleted/"))


def test_refuses_when_a_needed_pack_is_missing(vault: Vault) -> None:
    write_point(vault, random_chunks(12, 6), source="a")
    victim = next(vault.backend.list("data/")).name
    vault.backend.delete(victim)
    snapshot = names(vault)
    with pytest.raises(RepairNeeded, match=r"data/.*check --repair"):
        prune(Vault.open(vault.backend, PASSPHRASE), NOW)
    assert names(vault) == snapshot


def test_skips_an_unreadable_point_and_leaves_it(vault: Vault) -> None:
    """Nobody can restore from a point object that fails authentication, so it protects no
    data; prune leaves the object itself (and its tombstone) for check --repair."""
    a = write_point(vault, random_chunks(13, 2), source="a")
    b = write_point(vault, random_chunks(14, 2), source="b")
    soft_delete(vault, a.point, "test")
    vault.backend.put(f"points/{a.point.point_id}", b"garbage")
    report = prune(vault, NOW)
    assert report.points_removed == [] and report.tombstones_removed == 0
    assert vault.backend.get(f"points/{a.point.point_id}") == b"garbage"
    assert {f"deleted/{a.point.point_id}"} == {i.name for i in vault.backend.list("deleted/")}
    assert all(cid not in vault.index for cid in a.chunks)
    for cid, data in b.chunks.items():
        assert vault.read_chunk(cid) == data


def test_refuses_when_a_genuine_point_is_misnamed(vault: Vault) -> None:
    a = write_point(vault, random_chunks(15, 2), source="a")
    stored = vault.backend.get(f"points/{a.point.point_id}")
    vault.backend.delete(f"points/{a.point.point_id}")
    vault.backend.put("points/" + "0" * 64, stored)
    snapshot = names(vault)
    with pytest.raises(RepairNeeded, match=r"genuine recovery point.*check --repair"):
        prune(vault, NOW)
    assert names(vault) == snapshot
