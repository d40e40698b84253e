"""Fault injection through the wrapping backend: transient and permanent errors, short reads,
bit flips, lost writes, and failed uploads that must never leave a trusted dedup entry."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from strongroom.errors import (
    IntegrityError,
    PermanentStorageError,
    PrunedDuringBackup,
    StorageError,
)
from strongroom.storage import MemoryBackend, RetryingBackend
from strongroom.vault import Vault, check_vault
from strongroom.vault.forget import soft_delete
from strongroom.vault.prune import PruneOptions, prune
from strongroom.vault.repair import repair
from strongroom.vault.settings import change_settings
from tests.conftest import PASSPHRASE
from tests.faults import FaultRule, FaultyBackend
from tests.vault.helpers import Written, random_chunks, write_point


@pytest.fixture
def faulty() -> FaultyBackend:
    return FaultyBackend(MemoryBackend(), seed=11)


@pytest.fixture
def vault(faulty: FaultyBackend, make_vault: Callable[..., Vault]) -> Vault:
    v: Vault = make_vault(faulty, pack_size=100_000)
    return v


def reopen(backend: object, strict: bool = True) -> Vault:
    return Vault.open(backend, PASSPHRASE, strict=strict)  # type: ignore[arg-type]


def readable(vault: Vault, written: Written) -> bool:
    return all(vault.read_chunk(cid) == data for cid, data in written.chunks.items())


def test_transient_errors_are_retried_and_everything_succeeds(
    make_vault: Callable[..., Vault],
) -> None:
    faulty = FaultyBackend(MemoryBackend(), seed=5)
    backend = RetryingBackend(faulty, attempts=30, base_delay=0, sleep=lambda _: None)
    vault = make_vault(backend, pack_size=100_000)
    change_settings(vault, soft_delete_days=0)
    faulty.add_rule(FaultRule(op="*", kind="transient", probability=0.3))
    points = [write_point(vault, random_chunks(s, 6), source=f"s{s}") for s in range(3)]
    soft_delete(vault, points[0].point, "test")
    report = prune(vault, PruneOptions(grace_seconds=0))
    again = reopen(backend)
    assert report.points_removed == [points[0].point.point_id]
    assert all(readable(again, w) for w in points[1:])
    assert check_vault(again, read_data=True).ok
    assert faulty.injected["transient"] > 20 and backend.retries > 20


def test_permanent_error_fails_cleanly_and_commits_nothing(
    vault: Vault, faulty: FaultyBackend
) -> None:
    faulty.add_rule(FaultRule(op="put", kind="permanent", prefix="data/", after=1))
    with pytest.raises(PermanentStorageError, match=r"injected permanent fault on put data/"):
        write_point(vault, random_chunks(1, 10))
    faulty.clear_rules()
    again = reopen(faulty)
    assert again.points() == []
    assert check_vault(again, read_data=True).ok


def test_failed_pack_upload_leaves_no_dedup_entry(vault: Vault, faulty: FaultyBackend) -> None:
    datas = random_chunks(2, 10)
    faulty.add_rule(FaultRule(op="put", kind="permanent", prefix="data/", times=1))
    with pytest.raises(StorageError):
        write_point(vault, datas)
    # The same handle backs up the same data again: nothing it trusts may be missing.
    written = write_point(vault, datas)
    assert readable(vault, written)
    again = reopen(faulty)
    assert readable(again, written) and check_vault(again, read_data=True).ok


def test_failed_index_write_is_listed_by_the_next_flush(
    vault: Vault, faulty: FaultyBackend
) -> None:
    datas = random_chunks(3, 6)
    faulty.add_rule(FaultRule(op="put", kind="permanent", prefix="index/", times=1))
    with pytest.raises(StorageError):
        write_point(vault, datas)
    written = write_point(vault, datas + random_chunks(4, 2))  # deduplicates against them
    again = reopen(faulty)
    assert readable(again, written)
    assert check_vault(again, read_data=True).ok


@pytest.mark.parametrize("kind", ["short_read", "bitflip"])
def test_damaged_reads_are_retried_once_then_reported(
    vault: Vault, faulty: FaultyBackend, kind: str
) -> None:
    written = write_point(vault, random_chunks(5, 4))
    cid = next(iter(written.chunks))
    pack = vault.index.lookup(cid)
    assert pack is not None
    faulty.add_rule(FaultRule(op="get_range", kind=kind, prefix="data/", times=1))  # type: ignore[arg-type]
    assert vault.read_chunk(cid) == written.chunks[cid]
    faulty.add_rule(FaultRule(op="get_range", kind=kind, prefix="data/", times=2))  # type: ignore[arg-type]
    with pytest.raises(IntegrityError, match=pack.pack.hex()):
        vault.read_chunk(cid)
    faulty.clear_rules()
    # Whole-object reads (index and points at open, packs in check) are retried too.
    for prefix in ("index/", "points/", "data/"):
        faulty.add_rule(FaultRule(op="get", kind=kind, prefix=prefix, times=1))  # type: ignore[arg-type]
    again = reopen(faulty)
    assert again.points()[0].point_id == written.point.point_id
    assert check_vault(again, read_data=True).ok
    faulty.add_rule(FaultRule(op="get", kind=kind, prefix="index/", times=2))  # type: ignore[arg-type]
    with pytest.raises(IntegrityError, match="index/"):
        reopen(faulty)


def test_lost_pack_write_is_found_by_check(vault: Vault, faulty: FaultyBackend) -> None:
    faulty.add_rule(FaultRule(op="put", kind="lost_write", prefix="data/", times=1))
    written = write_point(vault, random_chunks(6, 8))
    report = check_vault(reopen(faulty))
    assert any("pack missing" in p.message for p in report.errors)
    assert written.point.point_id in report.affected_points


def test_lost_index_write_refuses_the_commit_and_is_repaired(
    vault: Vault, faulty: FaultyBackend
) -> None:
    faulty.add_rule(FaultRule(op="put", kind="lost_write", prefix="index/", times=1))
    datas = random_chunks(7, 8)
    with pytest.raises(PrunedDuringBackup, match="lost a write"):
        write_point(vault, datas)  # the commit notices its index object is not there
    report = check_vault(reopen(faulty))
    assert report.ok and any("not in any index" in p.message for p in report.problems)
    fixed = repair(reopen(faulty, strict=False))
    assert fixed.packs_newly_indexed
    written = write_point(reopen(faulty), datas)
    again = reopen(faulty)
    assert readable(again, written) and check_vault(again, read_data=True).ok
