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
from strongroom.files.cacherows import decode_body
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
    (body,) = db.execute("SELECT body FROM files WHERE dir = ?", (bytes(src),)).fetchone()
    entries = decode_body(body)
    ca, cb = entries[b"a"].chunks[0], entries[b"b"].chunks[0]
    swapped = body.replace(ca, b"\0" * 32).replace(cb, ca).replace(b"\0" * 32, cb)
    assert decode_body(swapped)[b"a"].chunks == [cb]  # well formed, only the MAC can tell
    db.execute("UPDATE files SET body = ? WHERE dir = ?", (swapped, bytes(src)))
    db.execute("DELETE FROM folders")  # the file rows themselves are under test
    db.commit()
    db.close()

    second = _backup(vault, src)
    assert second.bytes_read == 6000, "both files are read again"
    assert second.files_new == 2, "a rejected row counts as no row"
    assert second.files_unchanged == 300 and second.errors == []
    assert any("the rows of 1 folder(s) failed authentication" in w for w in second.warnings)
    out = _restored(vault, second.point_id, tmp_path / "out", src)
    assert (out / "a").read_bytes() == b"A" * 3000
    assert (out / "b").read_bytes() == b"B" * 3000

    third = _backup(vault, src)  # the re-read rows are authentic again
    assert third.bytes_read == 0 and third.warnings == []


def test_a_row_moved_to_another_folder_is_rejected(tmp_path: Path, vault: Vault) -> None:
    src = tmp_path / "src"
    for name in ("one", "two"):
        (src / name).mkdir(parents=True)
        (src / name / "f").write_bytes(name.encode() * 1000)  # same size, other content
    os.utime(src / "one" / "f", ns=(0, 0))
    os.utime(src / "two" / "f", ns=(0, 0))
    time.sleep(0.2)
    _backup(vault, src)
    db = sqlite3.connect(cache_path(vault.vault_id, "s"))
    one, two = bytes(src / "one"), bytes(src / "two")
    rows = dict(db.execute("SELECT dir, body FROM files").fetchall())
    db.execute("DELETE FROM files WHERE dir = ?", (two,))
    db.execute(  # one's row, MAC and all, now says it is two's
        "INSERT INTO files SELECT ?, body, seen, mac FROM files WHERE dir = ?", (two, one)
    )
    db.execute("DELETE FROM folders")
    db.commit()
    db.close()
    assert rows[one] != rows[two]
    second = _backup(vault, src)
    assert second.bytes_read == 3000  # two's f read again, as a file with no row
    assert second.files_unchanged == 1 and second.files_new == 1
    assert any("the rows of 1 folder(s) failed authentication" in w for w in second.warnings)
    out = _restored(vault, second.point_id, tmp_path / "out", src)
    assert (out / "two" / "f").read_bytes() == b"two" * 1000


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
