"""A files backup's processes store each new chunk once (vault/claims.py): identical files in
folders that different processes read; and a chunk left to a process that never stored it
fails the backup before its point."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from strongroom.errors import FilesError
from strongroom.files import BackupOptions, RestoreOptions, backup_files, restore_files
from strongroom.files.walker import TreeWalker
from strongroom.storage import LocalBackend
from strongroom.vault import ChunkClaims, Vault, VaultSettings, check_vault
from tests.conftest import FAST_KDF, PASSPHRASE
from tests.files._support import assert_same, snapshot, workers_up_before_the_walk

_BIG = 300 * 1024  # above the chunker's minimum: several chunks, through the CDC


@pytest.fixture(autouse=True)
def workers_do_every_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers up before the walk goes on, and every folder after the first through them (as
    in test_processes.py)."""
    workers_up_before_the_walk(monkeypatch)
    monkeypatch.setattr(TreeWalker, "helps", False)


def _tree(root: Path) -> tuple[Path, list[bytes]]:
    """40 folders of 25 files drawn from 30 contents, and one big file in every fifth folder:
    each content sits in folders that different processes read."""
    rng = random.Random(25)
    contents = [rng.randbytes(rng.choice((10, 900, 5000))) for _ in range(30)]
    big = rng.randbytes(_BIG)
    for n in range(40):
        folder = root / f"d{n:02}"
        folder.mkdir(parents=True)
        for i in range(25):
            (folder / f"f{i}").write_bytes(rng.choice(contents))
        if n % 5 == 0:
            (folder / "big").write_bytes(big)
    time.sleep(0.2)  # out of the racy window
    return root, contents


def _opts(tree: Path, source: str) -> BackupOptions:
    return BackupOptions([str(tree)], source=source, processes=2, processes_after=1)


def test_identical_files_read_by_different_processes_are_stored_once(
    tmp_path: Path, vault: Vault
) -> None:
    tree, _ = _tree(tmp_path / "src")
    s = backup_files(vault, _opts(tree, "dups"))
    assert s.processes == 2 and s.worker_dirs >= 39
    ids = [cid for cid, _ in vault.index.iter_entries()]
    assert len(ids) == len(set(ids)) == s.chunks_new  # no chunk stored twice
    # 30 contents, the big file's chunks and the trees (41 folders and the path above them)
    assert s.chunks_new < 30 + 10 + 50
    out = tmp_path / "out"
    restore_files(vault, vault.resolve_point(s.point_id), RestoreOptions(out))
    assert_same(snapshot(tree, atime=False), snapshot(out / tree.relative_to("/"), atime=False))
    report = check_vault(vault, read_data=True)
    assert report.ok, [(p.name, p.message) for p in report.problems]


def test_chunks_borrowed_from_an_index_object_written_mid_backup(tmp_path: Path) -> None:
    """A worker writes an index object every 64 packs, not only at its flush; the chunks
    another process borrowed may be in any of them, and the parent must see them all (the
    first run of all of /usr failed here: 381 chunks in a worker's earlier objects)."""
    vault = Vault.init(
        LocalBackend(tmp_path / "v"),
        PASSPHRASE,
        kdf=FAST_KDF,
        settings=VaultSettings(pack_size=64 << 10),
    )
    rng = random.Random(64)
    contents = [rng.randbytes(30_000) for _ in range(400)]  # 12 MB: some 190 packs
    tree = tmp_path / "src"
    for n in range(40):
        (tree / f"d{n:02}").mkdir(parents=True)
        for i in range(40):
            (tree / f"d{n:02}" / f"f{i}").write_bytes(rng.choice(contents))
    time.sleep(0.2)
    s = backup_files(vault, _opts(tree, "many packs"))
    assert s.processes == 2 and s.worker_dirs >= 39
    ids = [cid for cid, _ in vault.index.iter_entries()]
    assert len(ids) == len(set(ids)) == s.chunks_new
    assert len(vault.index_names) >= 4  # each worker wrote one before its flush's
    report = check_vault(vault, read_data=True)
    assert report.ok, [(p.name, p.message) for p in report.problems]


def test_a_claimed_chunk_nobody_stored_fails_the_backup_before_its_point(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim nobody honours (made here, before the backup: as if its claimant had stored
    nothing, or another chunk had the same first 64 bits) is found before the point is
    saved: the backup fails, no point refers to the missing chunk, and the next backup, with
    a fresh table, stores it."""
    tree, contents = _tree(tmp_path / "src")
    victim = vault.keys.chunk_id(contents[0])
    create = ChunkClaims.create

    def claimed_already() -> ChunkClaims | None:
        claims = create()
        assert claims is not None and claims.claim(victim)
        return claims

    monkeypatch.setattr(ChunkClaims, "create", claimed_already)
    with pytest.raises(FilesError, match="1 chunks that another process of this backup claimed"):
        backup_files(vault, _opts(tree, "lost"))
    assert vault.points() == []
    monkeypatch.setattr(ChunkClaims, "create", create)
    s = backup_files(vault, _opts(tree, "lost"))
    assert vault.missing_chunks([victim]) == set()
    assert [p.point_id for p in vault.points()] == [s.point_id]
