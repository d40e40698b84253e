"""GC safety: locks keep prune and backups apart, and a backup whose lock was lost never
commits a point with missing chunks (see docs/format.md §13)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from strongroom.errors import LockConflict, PrunedDuringBackup, VaultError
from strongroom.storage import Backend, LocalBackend
from strongroom.vault import PointManifest, Vault, check_vault
from strongroom.vault.commit import pruned_meanwhile
from strongroom.vault.envelope import MAGIC_LOCK, seal_object
from strongroom.vault.forget import soft_delete
from strongroom.vault.locks import STALE_AFTER, VaultLock
from strongroom.vault.prune import PruneOptions, prune
from strongroom.vault.settings import change_settings
from tests.conftest import PASSPHRASE
from tests.vault.helpers import random_chunks, write_point


@pytest.fixture
def root(tmp_path: Path, make_vault: Callable[..., Vault]) -> Path:
    vault = make_vault(LocalBackend(tmp_path / "v"), pack_size=100_000)
    change_settings(vault, soft_delete_days=0)
    return tmp_path / "v"


def open_vault(root: Path) -> Vault:
    return Vault.open(LocalBackend(root), PASSPHRASE)


def make_stale(vault: Vault, lock: VaultLock) -> None:
    """Rewrite ``lock`` as if its holder had been silent for longer than the stale timeout."""
    doc = {"exclusive": False, "host": socket.gethostname(), "pid": 1, "time": 0.0}
    stored = seal_object(MAGIC_LOCK, vault.keys.lock_key, vault.vault_id, json.dumps(doc).encode())
    vault.backend.put(lock.name, stored)
    lock.refreshed = time.time() - STALE_AFTER - 60


def start_backup(vault: Vault, datas: list[bytes]) -> tuple[VaultLock, PointManifest]:
    """A backup up to (not including) its commit: chunks stored and indexed, point not saved."""
    lock = vault.lock()
    writer = vault.writer()
    ids = [writer.put(d).chunk_id for d in datas]
    tree = vault.put_tree(writer, ids, b"late backup")
    writer.flush()
    writer.close()
    return lock, PointManifest(kind="files", source="late", roots=[tree.hex()])


def test_lost_lock_and_pruned_chunks_refuse_the_commit(root: Path) -> None:
    old = write_point(open_vault(root), random_chunks(1, 6), source="old")
    backup = open_vault(root)
    # The backup deduplicates against the old point's chunks, then stalls past the timeout.
    lock, manifest = start_backup(backup, list(old.chunks.values()) + random_chunks(2, 2))
    make_stale(backup, lock)
    pruner = open_vault(root)
    soft_delete(pruner, pruner.resolve_point("latest", source="old"), "test")
    report = prune(pruner, PruneOptions(grace_seconds=0))
    assert report.points_removed and report.packs_deleted
    assert lock.name not in {i.name for i in backup.backend.list("locks/")}  # evidence
    with pytest.raises(PrunedDuringBackup, match="run the backup again"):
        backup.save_point(manifest)
    lock.release()
    after = open_vault(root)
    assert after.points() == [] and check_vault(after, read_data=True).ok
    # Running the backup again works.
    again = write_point(open_vault(root), list(old.chunks.values()), source="old")
    assert check_vault(open_vault(root), read_data=True).ok
    assert open_vault(root).read_chunk(next(iter(again.chunks))) == next(
        iter(again.chunks.values())
    )


def test_grace_period_saves_a_backup_whose_lock_went_stale(root: Path) -> None:
    forgotten = write_point(open_vault(root), random_chunks(3, 4), source="gone")
    backup = open_vault(root)
    lock, manifest = start_backup(backup, random_chunks(4, 5))
    make_stale(backup, lock)
    pruner = open_vault(root)
    soft_delete(pruner, forgotten.point, "test")
    prune(pruner, PruneOptions(grace_seconds=3600))
    assert pruned_meanwhile(backup)
    point = backup.save_point(manifest)  # verified against the new index: nothing is missing
    lock.release()
    vault = open_vault(root)
    assert [p.point_id for p in vault.points()] == [point.point_id]
    assert check_vault(vault, read_data=True).ok


def test_no_evidence_no_reload(root: Path) -> None:
    vault = open_vault(root)
    with vault.lock():
        write_point(vault, random_chunks(5, 2))
        assert not pruned_meanwhile(vault)


def test_refresh_notices_a_removed_lock(root: Path) -> None:
    vault = open_vault(root)
    lock = vault.lock()
    assert lock.still_held()
    vault.backend.delete(lock.name)
    lock.refresh()
    assert lock.lost and not lock.still_held()
    assert lock.name in {i.name for i in vault.backend.list("locks/")}  # rewritten
    lock.release()
    assert vault.held_locks() == []


def test_prune_waits_for_backups_and_backups_for_prune(root: Path) -> None:
    vault = open_vault(root)
    with vault.lock(), pytest.raises(LockConflict, match="shared lock"):
        prune(open_vault(root), PruneOptions(grace_seconds=0))
    with open_vault(root).lock(exclusive=True), pytest.raises(LockConflict, match="exclusive"):
        write_point_locked(open_vault(root))


def write_point_locked(vault: Vault) -> None:
    with vault.lock():
        write_point(vault, random_chunks(6, 1))


class _CommitDuringPrune:
    """A backend that lets another client commit a point (ignoring locks) mid-prune."""

    def __init__(self, inner: Backend, commit: Callable[[], None]) -> None:
        self.inner, self._commit, self._done = inner, commit, False

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def put(self, name: str, data: bytes | bytearray | memoryview) -> None:
        self.inner.put(name, data)
        if name.startswith("index/") and not self._done:
            self._done = True
            self._commit()


def test_prune_stops_before_deleting_if_a_point_appears(root: Path) -> None:
    forgotten = write_point(open_vault(root), random_chunks(7, 4), source="gone")
    soft_delete(open_vault(root), forgotten.point, "test")
    intruder = open_vault(root)

    def commit() -> None:
        write_point(intruder, random_chunks(8, 2), source="rogue")

    backend = _CommitDuringPrune(LocalBackend(root), commit)
    pruner = Vault.open(backend, PASSPHRASE)  # type: ignore[arg-type]
    packs = {i.name for i in LocalBackend(root).list("data/")}
    with pytest.raises(VaultError, match="committed while prune ran"):
        prune(pruner, PruneOptions(grace_seconds=0, repack_threshold=1.0))
    assert packs <= {i.name for i in LocalBackend(root).list("data/")}
    assert check_vault(open_vault(root), read_data=True).ok


def test_a_backup_with_a_lost_lock_does_not_commit_while_prune_runs(root: Path) -> None:
    backup = open_vault(root)
    lock, manifest = start_backup(backup, random_chunks(9, 3))
    make_stale(backup, lock)
    pruner = open_vault(root)
    with pruner.lock(exclusive=True):
        assert pruner.remove_stale_locks()  # what prune does: evidence for the backup
        with pytest.raises(PrunedDuringBackup, match="exclusive lock"):
            backup.save_point(manifest)
    point = backup.save_point(manifest)  # prune is gone: the lock is good again, data intact
    assert lock.still_held()
    lock.release()
    assert [p.point_id for p in open_vault(root).points()] == [point.point_id]
