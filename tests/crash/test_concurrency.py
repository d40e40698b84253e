"""Concurrent work on one vault: two backups at once, and a backup while prune runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from strongroom.storage import LocalBackend
from strongroom.vault import Vault, VaultSettings
from strongroom.vault.forget import soft_delete
from strongroom.vault.prune import PruneOptions, PruneReport, prune
from tests.conftest import FAST_KDF, PASSPHRASE
from tests.crash._support import (
    ROOT,
    checked,
    cli,
    make_tree,
    open_vault,
    restored_tree,
    snapshot_tree,
)
from tests.vault.helpers import random_chunks, write_point


def backup_process(
    vault: Path, src: Path, source: str, env: dict[str, str]
) -> subprocess.Popen[str]:
    args = ["backup", "files", str(src), "--source", source, "--json"]
    return subprocess.Popen(
        [sys.executable, "-m", "strongroom.cli.main", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
            "STRONGROOM_PASSWORD": PASSPHRASE,
            "STRONGROOM_VAULT": str(vault),
            "XDG_CACHE_HOME": str(vault.parent / f"cache-{source}"),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_two_backups_at_once(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    Vault.init(LocalBackend(vault), PASSPHRASE, kdf=FAST_KDF, settings=VaultSettings(1 << 20))
    srcs = [tmp_path / "a", tmp_path / "b"]
    for i, src in enumerate(srcs):
        make_tree(src, seed=1, files=8)  # the same files in both: they race to store them
        make_tree(src, seed=10 + i, files=8)
    procs = [backup_process(vault, src, src.name, {}) for src in srcs]
    docs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        docs.append(json.loads(out))
    assert len(open_vault(vault).points()) == 2
    for src, doc in zip(srcs, docs, strict=True):
        assert restored_tree(vault, doc["point"], src, tmp_path / f"r-{src.name}") == snapshot_tree(
            src
        )
    assert checked(vault).ok


class _SlowDeletes(LocalBackend):
    """Deletes take a while, so prune holds its exclusive lock long enough to be caught."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.deleting = threading.Event()

    def delete(self, name: str) -> None:
        if not name.startswith("locks/"):
            self.deleting.set()
            time.sleep(0.15)
        super().delete(name)


@pytest.mark.slow
def test_backup_waits_while_prune_runs(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    v = Vault.init(
        LocalBackend(vault),
        PASSPHRASE,
        kdf=FAST_KDF,
        settings=VaultSettings(pack_size=100_000, soft_delete_days=0),
    )
    kept = write_point(v, random_chunks(1, 6), source="kept")
    for s in range(2, 6):
        soft_delete(v, write_point(v, random_chunks(s, 6), source=f"gone{s}").point, "test")
    slow = _SlowDeletes(vault)
    done: list[tuple[PruneReport, datetime]] = []

    def run_prune() -> None:
        report = prune(Vault.open(slow, PASSPHRASE), PruneOptions(grace_seconds=0))
        done.append((report, datetime.now(UTC)))

    pruner = threading.Thread(target=run_prune)
    pruner.start()
    assert slow.deleting.wait(30)
    src = tmp_path / "src"
    make_tree(src, seed=7, files=6)
    refused = cli(vault, "backup", "files", str(src), "--source", "new")
    assert refused.code == 1 and "vault is locked: exclusive lock" in refused.err
    waiting = backup_process(vault, src, "new", {"STRONGROOM_LOCK_WAIT": "120"})
    _, err = waiting.communicate(timeout=180)
    pruner.join()
    assert waiting.returncode == 0, err
    report, prune_end = done[0]
    assert len(report.points_removed) == 4
    point = open_vault(vault).resolve_point("latest", source="new")
    assert point.manifest.timestamp >= prune_end  # it ran after prune let go of the lock
    assert restored_tree(vault, point.point_id, src, tmp_path / "r") == snapshot_tree(src)
    check = open_vault(vault)
    for cid, data in kept.chunks.items():
        assert check.read_chunk(cid) == data
    assert not checked(vault).problems
