"""Backup workers started as the vault opens (files/warmstart.py): only for a first backup
of a tree with enough to read, after the key derivation (not while its memory is held), used
from the walk's start, and closed when the backup does not take them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strongroom.cli.main import main
from strongroom.files import BackupOptions, WarmWorkers, backup_files
from strongroom.files.cachepath import cache_path
from strongroom.files.walker import TreeWalker
from strongroom.files.warmstart import enough_to_read
from strongroom.files.workerproc import WorkerProcess
from strongroom.vault import Vault
from strongroom.vault.keys import KDFParams
from tests.conftest import PASSPHRASE
from tests.files._support import subtree_of


def _tree(root: Path, folders: int, files: int) -> Path:
    for d in range(folders):
        sub = root / f"d{d:03}"
        sub.mkdir(parents=True)
        for i in range(files):
            (sub / f"f{i}").write_bytes(b"%d-%d" % (d, i))
    return root


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[WorkerProcess]]:
    """Every worker process started, in order; all must have exited by the test's end."""
    started: list[WorkerProcess] = []
    init = WorkerProcess.__init__

    def record(self: WorkerProcess, *args: Any) -> None:
        init(self, *args)
        started.append(self)

    monkeypatch.setattr(WorkerProcess, "__init__", record)
    yield started
    for w in started:
        assert w.proc.wait(timeout=30) == 0


def test_the_quick_look_counts_entries_and_files(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t", 10, 30)  # 10 folders, 300 files
    atime = os.stat(tree / "d000").st_atime_ns  # older than its mtime: a listing would move it
    assert enough_to_read([str(tree)], 310, 300)
    assert os.stat(tree / "d000").st_atime_ns == atime  # listed as the walk lists (O_NOATIME)
    assert not enough_to_read([str(tree)], 311, 0)
    assert not enough_to_read([str(tree)], 0, 301)
    # two paths add up; a file, a missing path and an unreadable folder count as empty
    assert enough_to_read([str(tree / "d000"), str(tree / "d001")], 60, 60)
    assert not enough_to_read([str(tree / "d000" / "f0"), str(tmp_path / "gone")], 1, 0)
    (tmp_path / "links").mkdir()
    os.symlink(tree, tmp_path / "links" / "tree")  # not followed: one entry
    assert enough_to_read([str(tmp_path / "links")], 1, 1)
    assert not enough_to_read([str(tmp_path / "links")], 2, 0)


def test_the_quick_look_sees_a_tree_of_many_small_folders(tmp_path: Path) -> None:
    """1,000 folders of two files (3,040 entries, 2,000 files): the default's 3,000 entries
    with 1,000 files are found only past the 512th folder, where the look used to stop; the
    walk then started its workers late, reading with a thread meanwhile (12,500 such folders:
    1.92 s against 1.58 with the workers started at once)."""
    for a in range(40):
        for b in range(25):
            leaf = tmp_path / "t" / f"a{a:02}" / f"b{b:02}"
            leaf.mkdir(parents=True)
            (leaf / "f").write_bytes(b"1")
            (leaf / "g").write_bytes(b"2")
    assert enough_to_read([str(tmp_path / "t")], 3000, 1000)
    assert not enough_to_read([str(tmp_path / "t")], 3100, 0)


def test_workers_start_only_for_a_first_backup_of_enough(
    tmp_path: Path, vault: Vault, spawned: list[WorkerProcess]
) -> None:
    tree = _tree(tmp_path / "t", 10, 30)
    opts = BackupOptions([str(tree)], source="s", processes=2, processes_after=300)
    few = BackupOptions([str(tree)], source="s", processes=2, processes_after=400)
    with WarmWorkers(few) as warm:
        warm.begin(vault.vault_id)
        assert not warm.started  # 310 entries, not 400
    with WarmWorkers(BackupOptions([str(tree)], processes=0, processes_after=1)) as warm:
        warm.begin(vault.vault_id)
        assert not warm.started  # no workers wanted
    with WarmWorkers(opts) as warm:
        warm.begin(vault.vault_id)
        assert warm.started and len(spawned) == 2
    # closed unused: they exit at the end of their input (the fixture checks their status)
    assert all(w.proc.poll() is not None for w in spawned)
    cache_path(vault.vault_id, "s").parent.mkdir(parents=True)
    cache_path(vault.vault_id, "s").write_bytes(b"")
    with WarmWorkers(opts) as warm:
        warm.begin(vault.vault_id)
        assert not warm.started  # the source has a files cache: maybe nothing to read
    no_cache = BackupOptions([str(tree)], source="s", processes=1, processes_after=300)
    no_cache.use_cache = False
    with WarmWorkers(no_cache) as warm:
        warm.begin(vault.vault_id)
        assert warm.started  # without the cache everything is read


def test_a_backup_uses_warm_workers_from_its_first_folder(
    tmp_path: Path, vault: Vault, spawned: list[WorkerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without them, 310 entries never reach ``processes_after`` = 300 with a third to read
    before the walk has listed ten folders; with them every folder but the first goes to a
    worker, and the point is the one a single process makes."""
    tree = _tree(tmp_path / "t", 10, 30)
    monkeypatch.setattr(TreeWalker, "helps", False)  # this process lists nothing itself
    start = TreeWalker._maybe_start_workers

    def start_and_wait(self: TreeWalker) -> None:  # as the key derivation gives it time to
        start(self)
        if self.procs is not None:
            self.procs.wait_ready(60)

    monkeypatch.setattr(TreeWalker, "_maybe_start_workers", start_and_wait)
    backup_files(vault, BackupOptions([str(tree)], source="settle", processes=0))  # dir atimes
    alone = backup_files(vault, BackupOptions([str(tree)], source="one", processes=0))
    opts = BackupOptions([str(tree)], source="two", processes=1, processes_after=300)
    with WarmWorkers(opts) as warm:
        warm.begin(vault.vault_id)
        (worker,) = spawned
        shared = backup_files(vault, opts, warm=warm)
        assert not warm.started  # taken
    assert shared.processes == 1 and shared.worker_dirs >= 9
    assert len(spawned) == 1 and worker.proc.returncode == 0
    # the same tree, chunk for chunk (its ancestors' times may have moved meanwhile)
    assert subtree_of(vault, alone.point_id, tree) == subtree_of(vault, shared.point_id, tree)
    assert shared.files_new == alone.files_new == 300


def test_workers_a_backup_cannot_use_are_closed(
    tmp_path: Path, vault: Vault, spawned: list[WorkerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A vault that cannot be handed over (storage not on a local path) keeps the backup in
    one process: the warm workers are closed by the backup, not left waiting."""
    tree = _tree(tmp_path / "t", 10, 30)
    monkeypatch.setattr(Vault, "handoff", lambda self: None)
    opts = BackupOptions([str(tree)], source="s", processes=1, processes_after=300)
    warm = WarmWorkers(opts)
    warm.begin(vault.vault_id)
    summary = backup_files(vault, opts, warm=warm)
    assert summary.processes == 0 and summary.files_new == 300
    assert not warm.started and spawned[0].proc.poll() is not None


@pytest.fixture
def cli_vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STRONGROOM_VAULT", str(tmp_path / "vault"))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSPHRASE)
    assert main(["init", "--kdf-memory", "1", "--kdf-time", "1"]) == 0
    tree = _tree(tmp_path / "big", 30, 110)  # 3,330 entries: past the default 3,000
    # out of the racy window: a file changed within 100 ms of its read gets no cache row, and
    # a backup fast enough to read half the tree in that window left the next one a third to
    # read again (enough to start its workers)
    time.sleep(0.2)
    return tree


def test_the_cli_starts_workers_right_after_the_key_derivation_on_a_first_backup(
    cli_vault: Path, spawned: list[WorkerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    derive = KDFParams.derive
    init = WorkerProcess.__init__

    def record_derive(self: KDFParams, passphrase: str, salt: bytes) -> bytes:
        events.append("derive")
        return derive(self, passphrase, salt)

    def record_start(self: WorkerProcess, *args: Any) -> None:
        events.append("start")
        init(self, *args)

    monkeypatch.setattr(KDFParams, "derive", record_derive)
    monkeypatch.setattr(WorkerProcess, "__init__", record_start)
    argv = ["backup", "files", str(cli_vault), "--source", "s", "--processes", "1", "--json"]
    assert main(argv) == 0
    # after: Argon2id's memory and the workers' modules are never held at once (peak RSS)
    assert events[:2] == ["derive", "start"]
    events.clear()
    assert main(argv) == 0  # the source has a files cache now: nothing starts early
    assert events[0] == "derive" and "start" not in events
    events.clear()
    assert main([*argv, "--pre-hook", "true"]) == 0  # a hook may change the paths: no look
    assert events[0] == "derive"


def test_a_wrong_passphrase_starts_no_worker(
    cli_vault: Path, spawned: list[WorkerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRONGROOM_PASSWORD", "not the passphrase")
    argv = ["backup", "files", str(cli_vault), "--source", "s", "--processes", "1"]
    assert main(argv) != 0
    assert spawned == []
