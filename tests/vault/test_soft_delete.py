"""Soft delete (tombstones), undelete, immutability and the settings that govern them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from strongroom.errors import ImmutablePoint, PointNotFound, SettingsError
from strongroom.storage import LocalBackend, MemoryBackend
from strongroom.vault import Vault, VaultSettings
from strongroom.vault.forget import (
    apply_forget,
    plan_forget,
    plan_forget_points,
    soft_delete,
    undelete,
)
from strongroom.vault.prune import PruneOptions, prune
from strongroom.vault.retention import KeepPolicy
from strongroom.vault.settings import change_settings
from strongroom.vault.tombstones import DELETED_PREFIX
from tests.conftest import PASSPHRASE
from tests.vault.helpers import Written, random_chunks, write_point

NOW = datetime.now(UTC)


def backdated(vault: Vault, days: float, source: str = "web1", seed: int = 0) -> Written:
    """A point whose manifest says it was made ``days`` ago."""
    when = (NOW - timedelta(days=days)).isoformat(timespec="microseconds")
    return write_point(vault, random_chunks(seed, 2, 4096), source=source, time=when)


@pytest.fixture
def vault(make_vault: Callable[..., Vault]) -> Vault:
    v: Vault = make_vault(MemoryBackend())
    return v


def test_forget_hides_and_undelete_restores(vault: Vault) -> None:
    a, b = backdated(vault, 3, seed=1), backdated(vault, 1, seed=2)
    stone = soft_delete(vault, a.point, "test")
    assert stone.purge_time - datetime.fromisoformat(stone.deleted_at) == timedelta(days=14)
    assert [p.point_id for p in vault.points()] == [b.point.point_id]
    assert len(vault.points(include_deleted=True)) == 2
    with pytest.raises(PointNotFound, match="strongroom undelete"):
        vault.resolve_point(a.point.short_id)
    reopened = Vault.open(vault.backend, PASSPHRASE)
    assert a.point.point_id not in {p.point_id for p in reopened.points()}
    assert reopened.tombstones()[a.point.point_id].reason == "test"
    undelete(reopened, a.point.short_id)
    assert a.point.point_id in {p.point_id for p in reopened.points()}
    assert not list(vault.backend.list(DELETED_PREFIX))
    with pytest.raises(PointNotFound, match="not deleted"):
        undelete(reopened, a.point.short_id)


def test_soft_deleted_data_survives_prune_until_the_window_ends(
    tmp_path: Path, make_vault: Callable[..., Vault]
) -> None:
    vault = make_vault(LocalBackend(tmp_path / "v"))
    a = backdated(vault, 2, seed=3)
    soft_delete(vault, a.point, "test")
    assert prune(vault, PruneOptions(grace_seconds=0)).points_removed == []
    for cid, data in a.chunks.items():
        assert vault.read_chunk(cid) == data
    # A tombstone written with a zero window (soft delete off) is due at once.
    change_settings(vault, soft_delete_days=0)
    undelete(vault, a.point.point_id)
    soft_delete(vault, a.point, "again")
    report = prune(vault, PruneOptions(grace_seconds=0))
    assert report.points_removed == [a.point.point_id]
    assert a.point.point_id not in {p.point_id for p in vault.points(include_deleted=True)}
    assert not list(vault.backend.list(DELETED_PREFIX))
    with pytest.raises(PointNotFound):
        undelete(vault, a.point.point_id)


def test_lowering_the_window_keeps_earlier_purge_dates(vault: Vault) -> None:
    a = backdated(vault, 2, seed=4)
    soft_delete(vault, a.point, "test")
    change_settings(vault, soft_delete_days=0)
    assert prune(vault, PruneOptions(grace_seconds=0)).points_removed == []
    assert vault.tombstones()[a.point.point_id].purge_time > NOW + timedelta(days=13)


def test_immutable_points_cannot_be_forgotten(vault: Vault) -> None:
    young, old = backdated(vault, 2, seed=5), backdated(vault, 40, seed=6)
    backdated(vault, 1, seed=8)  # the newest: kept by "last 1"
    change_settings(vault, immutable_days=30)
    with pytest.raises(ImmutablePoint, match="immutable until"):
        soft_delete(vault, young.point, "test")
    plans = plan_forget(vault, KeepPolicy(last=1), source="web1")
    decisions = {d.point.point_id: d for d in plans[0].decisions}
    assert decisions[young.point.point_id].keep
    assert any("immutable until" in r for r in decisions[young.point.point_id].reasons)
    assert not decisions[old.point.point_id].keep
    by_id = plan_forget_points(vault, [young.point, old.point])
    assert [p.point_id for p in by_id[0].to_forget] == [old.point.point_id]
    apply_forget(vault, by_id, "test")
    assert set(vault.tombstones()) == {old.point.point_id}


def test_immutability_is_read_fresh_from_the_vault(vault: Vault) -> None:
    young = backdated(vault, 1, seed=7)
    plans = plan_forget_points(vault, [young.point])
    assert plans[0].to_forget
    other = Vault.open(vault.backend, PASSPHRASE)
    change_settings(other, immutable_days=7)
    with pytest.raises(ImmutablePoint):
        apply_forget(vault, plans, "planned before the vault became immutable")
    assert not vault.tombstones()


def test_settings_rules(vault: Vault) -> None:
    change_settings(vault, immutable_days=10)
    with pytest.raises(SettingsError, match="never lowered"):
        change_settings(vault, immutable_days=9)
    change_settings(vault, immutable_days=20, soft_delete_days=30)
    with pytest.raises(SettingsError, match="between 0 and"):
        change_settings(vault, soft_delete_days=-1)
    reopened = Vault.open(vault.backend, PASSPHRASE)
    s = reopened.config.settings
    assert (s.immutable_days, s.soft_delete_days) == (20, 30)
    assert s.pack_size == vault.config.settings.pack_size


def test_compression_level_rules(vault: Vault) -> None:
    for bad in (0, 20, -1):
        with pytest.raises(SettingsError, match="compression-level"):
            change_settings(vault, compression_level=bad)
        with pytest.raises(SettingsError, match="compression-level"):
            Vault.init(MemoryBackend(), "pw", settings=VaultSettings(compression_level=bad))
    assert change_settings(vault, compression_level=7).compression_level == 7
    assert Vault.open(vault.backend, PASSPHRASE).config.settings.compression_level == 7
