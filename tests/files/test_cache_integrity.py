"""The files cache is authenticated: a tampered, swapped or damaged cache costs re-reads,
never a point recording the wrong content, and never a traceback."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from strongroom.files import (
    BackupOptions,
    BackupSummary,
    RestoreOptions,
    backup_files,
    restore_files,
)
from strongroom.files.cachepath import cache_path
from strongroom.vault import Vault


def _tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_bytes(b"A" * 3000)
    (src / "b").write_bytes(b"B" * 3000)  # same size as a: only the chunks tell them apart
    for i in range(300):  # enough rows for a cache file of many pages
        (src / "sub" / f"f{i:03}").write_bytes(os.urandom(200) + b"%d" % i)
    time.sleep(0.2)  # leave the racy window, so every file is cached
    return src


def _backup(vault: Vault, src: Path) -> BackupSummary:
    return backup_files(vault, BackupOptions([str(src)], source="s"))


def _restored(vault: Vault, point: str, out: Path, src: Path) -> Path:
    summary = restore_files(vault, vault.resolve_point(point), RestoreOptions(out))
    assert summary.errors == []
    return out / os.path.relpath(src, "/")


def test_swapped_rows_are_rejected_and_the_files_read_again(tmp_path: Path, vault: Vault) -> None:
    src = _tree(tmp_path)
    first = _backup(vault, src)
    assert first.files_new == 302
    db = sqlite3.connect(cache_path(vault.vault_id, "s"))
    (ca,) = db.execute("SELECT chunks FROM files WHERE name = ?", (b"a",)).fetchone()
    (cb,) = db.execute("SELECT chunks FROM files WHERE name = ?", (b"b",)).fetchone()
    db.execute("UPDATE files SET chunks = ? WHERE name = ?", (cb, b"a"))
    db.execute("UPDATE files SET chunks = ? WHERE name = ?", (ca, b"b"))
    db.execute("DELETE FROM folders")  # the file rows themselves are under test
    db.commit()
    db.close()

    second = _backup(vault, src)
    assert second.bytes_read == 6000, "both files are read again"
    assert second.files_new == 2, "a rejected row counts as no row"
    assert second.files_unchanged == 300 and second.errors == []
    assert any("2 entries failed authentication" in w for w in second.warnings)
    out = _restored(vault, second.point_id, tmp_path / "out", src)
    assert (out / "a").read_bytes() == b"A" * 3000
    assert (out / "b").read_bytes() == b"B" * 3000

    third = _backup(vault, src)  # the re-read rows are authentic again
    assert third.bytes_read == 0 and third.warnings == []


def test_a_cache_from_another_source_is_not_trusted(tmp_path: Path, vault: Vault) -> None:
    src = _tree(tmp_path)
    _backup(vault, src)
    other = cache_path(vault.vault_id, "other")
    other.write_bytes(cache_path(vault.vault_id, "s").read_bytes())
    moved = backup_files(vault, BackupOptions([str(src)], source="other"))
    assert moved.bytes_read == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())


def _damaged_cache_backup(vault: Vault, src: Path, damage: bytes | None) -> BackupSummary:
    _backup(vault, src)
    path = cache_path(vault.vault_id, "s")
    for extra in ("-wal", "-shm"):
        assert not Path(f"{path}{extra}").exists()  # checkpointed at close
    size = path.stat().st_size
    assert size >= 8 * 4096
    path.write_bytes(damage if damage is not None else path.read_bytes()[: size // 3])
    again = _backup(vault, src)
    assert again.errors == [] and again.files_new == 302
    assert any("is damaged" in w for w in again.warnings), again.warnings
    aside = [p.name for p in path.parent.iterdir() if ".damaged-" in p.name]
    assert len(aside) == 1 and aside[0].startswith(path.name)
    third = _backup(vault, src)  # rebuilt: the next backup reads nothing
    assert third.bytes_read == 0 and third.warnings == []
    return again


def test_random_bytes_as_cache_file_are_set_aside(tmp_path: Path, vault: Vault) -> None:
    src = _tree(tmp_path)
    again = _damaged_cache_backup(vault, src, os.urandom(50_000))
    assert again.bytes_read == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())


def test_truncated_cache_file_is_set_aside(tmp_path: Path, vault: Vault) -> None:
    src = _tree(tmp_path)
    _damaged_cache_backup(vault, src, None)
