"""Incremental backups: the files cache, its validity checks, files changing while read."""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.files import (
    BackupOptions,
    RestoreOptions,
    backup_files,
    content,
    reading,
    restore_files,
)
from strongroom.files.cachepath import cache_path, cache_scope
from strongroom.files.cacherows import (
    CacheEntry,
    body_mac,
    decode_body,
    decode_xattrs,
    encode_record,
    encode_xattrs,
)
from strongroom.files.content import Content, ContentReader
from strongroom.vault import Vault
from tests.files._support import assert_same, snapshot

N_FILES = 20_000


def _many_files(root: Path, n: int, rng: random.Random) -> list[Path]:
    files = []
    for d in range(n // 200):
        sub = root / f"d{d:03}"
        sub.mkdir(parents=True)
        for i in range(200):
            p = sub / f"f{i:03}.bin"
            p.write_bytes(rng.randbytes(rng.randint(1024, 4096)))
            files.append(p)
    return files


def _cached(db_path: Path) -> dict[bytes, dict[bytes, CacheEntry]]:
    """Every folder's records in the files cache, by folder and name."""
    with sqlite3.connect(db_path) as db:
        found = db.execute("SELECT dir, body FROM files").fetchall()
    return {bytes(d): decode_body(bytes(body)) for d, body in found}


def _rewrite(
    db: sqlite3.Connection, folder: bytes, entries: dict[bytes, CacheEntry], key: bytes
) -> None:
    """A folder's row made again from ``entries``, with a MAC under ``key`` (as the key's
    holder could write it; a wrong key makes a row that fails)."""
    body = b"".join(
        encode_record(
            (
                folder,
                n,
                e.ino,
                e.size,
                e.mtime_ns,
                e.ctime_ns,
                e.chunks,
                e.extents,
                e.flags,
                e.xattrs,
            )
        )
        for n, e in entries.items()
    )
    db.execute(
        "UPDATE files SET body = ?, mac = ? WHERE dir = ?",
        (body, body_mac(key, folder, body), folder),
    )


def test_unchanged_rebackup_reads_nothing_and_one_percent_adds_one_percent(
    tmp_path: Path, vault: Vault
) -> None:
    rng = random.Random(7)
    src = tmp_path / "src"
    files = _many_files(src, N_FILES, rng)
    time.sleep(0.2)  # leave the racy window (files changed right before they are read)
    opts = BackupOptions([str(src)], source="inc")
    first = backup_files(vault, opts)
    assert first.files_new == N_FILES and first.errors == []

    again = backup_files(vault, opts)
    assert again.bytes_read == 0
    assert again.files_unchanged == N_FILES
    assert again.files_new == again.files_changed == 0
    assert again.data_added == again.tree_bytes_added  # only trees (directory atimes moved)

    changed = rng.sample(files, N_FILES // 100)
    for p in changed:
        p.write_bytes(rng.randbytes(rng.randint(1024, 4096)))
    time.sleep(0.2)
    third = backup_files(vault, opts)
    assert third.files_changed == len(changed)
    assert third.files_unchanged == N_FILES - len(changed)
    assert third.bytes_read == sum(p.stat().st_size for p in changed)
    content_first = first.data_added - first.tree_bytes_added
    content_third = third.data_added - third.tree_bytes_added
    assert 0.008 < content_third / content_first < 0.013
    assert third.bytes_added < 0.05 * first.bytes_added


def test_cached_ids_missing_from_vault_are_never_trusted(tmp_path: Path, vault: Vault) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"A" * 1000)
    (src / "b").write_bytes(b"B" * 1000)
    time.sleep(0.2)
    backup_files(vault, BackupOptions([str(src)], source="s"))
    db_path = cache_path(vault.vault_id, "s")
    entries = _cached(db_path)[bytes(src)]
    db = sqlite3.connect(db_path)
    # an authentic row (as the key's holder could write) naming a chunk the vault lacks
    entries[b"a"].chunks = [os.urandom(32)]
    _rewrite(db, bytes(src), entries, vault.local_cache_key(cache_scope("s")))
    db.execute("DELETE FROM folders")  # the folder row would answer for "a" (rightly)
    db.commit()
    db.close()
    second = backup_files(vault, BackupOptions([str(src)], source="s"))
    assert second.bytes_read == 1000
    assert second.files_unchanged + second.files_changed == 2  # "a" was read again
    out = tmp_path / "out"
    restore_files(vault, vault.resolve_point(second.point_id), RestoreOptions(out))
    assert (out / os.path.relpath(src, "/") / "a").read_bytes() == b"A" * 1000


def test_unchanged_rows_are_not_rewritten_and_vanished_names_are_dropped(
    tmp_path: Path, vault: Vault
) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("a", "b", "sub/c"):
        (src / name).write_bytes(name.encode() * 3000)
    time.sleep(0.2)
    opts = BackupOptions([str(src)], source="s")
    backup_files(vault, opts)
    db_path = cache_path(vault.vault_id, "s")

    def rows() -> dict[bytes, tuple[list[bytes], int]]:
        with sqlite3.connect(db_path) as db:
            seen = dict(db.execute("SELECT dir, seen FROM files").fetchall())
        return {
            n: (e.chunks, seen[folder])
            for folder, entries in _cached(db_path).items()
            for n, e in entries.items()
        }

    before = rows()
    assert set(before) == {b"a", b"b", b"c"}
    with sqlite3.connect(db_path) as db:  # rows seen a day and a half ago get touched
        db.execute("UPDATE files SET seen = seen - 129600 WHERE dir = ?", (bytes(src / "sub"),))
        # "sub" is unchanged: its folder row answers for it, and keeps its rows alive when
        # it is due a refresh itself
        db.execute("UPDATE folders SET seen = seen - 129600 WHERE dir = ?", (bytes(src / "sub"),))
    (src / "b").unlink()
    (src / "a").write_bytes(b"changed" * 1000)
    time.sleep(0.2)
    again = backup_files(vault, opts)
    assert again.files_changed == 1 and again.files_unchanged == 1
    after = rows()
    assert set(after) == {b"a", b"c"}, "the vanished file's row must go"
    assert after[b"a"][0] != before[b"a"][0]
    assert after[b"c"][1] >= before[b"c"][1], "a directory's old rows are kept alive"
    third = backup_files(vault, opts)
    assert third.bytes_read == 0 and third.files_unchanged == 2


def test_no_cache_reads_everything(tmp_path: Path, vault: Vault) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"x" * 5000)
    time.sleep(0.2)
    backup_files(vault, BackupOptions([str(src)], source="s"))
    again = backup_files(vault, BackupOptions([str(src)], source="s", use_cache=False))
    assert again.bytes_read == 5000 and again.data_added == again.tree_bytes_added


@pytest.mark.parametrize("changes", [1, 2])
def test_file_changing_while_read(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch, changes: int
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    victim = src / "busy.log"
    victim.write_bytes(b"first\n")
    (src / "calm").write_bytes(b"calm")
    original = ContentReader.read
    calls = {"n": 0}

    def read(self: ContentReader, fd: int, st: os.stat_result) -> Content:
        got = original(self, fd, st)
        if os.fstat(fd).st_ino == victim.stat().st_ino and calls["n"] < changes:
            calls["n"] += 1
            with victim.open("ab") as f:
                f.write(b"more\n")
        return got

    monkeypatch.setattr(ContentReader, "read", read)
    monkeypatch.setattr(reading, "_smallread", None)  # its own test: test_smallread.py
    summary = backup_files(vault, BackupOptions([str(src)], source="busy"))
    if changes == 1:
        assert summary.inconsistent == []  # the retry saw a stable file
    else:
        assert summary.inconsistent == [str(victim)]
        point = vault.resolve_point(summary.point_id)
        assert point.manifest.meta["inconsistent"] == [str(victim)]
        assert point.manifest.summary["inconsistent"] == 1
    assert summary.errors == []
    out = tmp_path / "out"
    restore_files(vault, vault.resolve_point(summary.point_id), RestoreOptions(out))
    assert (out / os.path.relpath(src, "/") / "busy.log").read_bytes().startswith(b"first\n")


def test_touched_file_is_reread_and_metadata_updated(tmp_path: Path, vault: Vault) -> None:
    src = tmp_path / "src"
    src.mkdir()
    f = src / "f"
    f.write_bytes(b"same")
    time.sleep(0.2)
    backup_files(vault, BackupOptions([str(src)], source="s"))
    os.utime(f, ns=(10**18, 10**18))
    f.chmod(0o600)
    time.sleep(0.2)
    second = backup_files(vault, BackupOptions([str(src)], source="s"))
    assert second.bytes_read == 4 and second.files_unchanged == 1
    before = snapshot(src)
    out = tmp_path / "out"
    restore_files(vault, vault.resolve_point(second.point_id), RestoreOptions(out))
    assert_same(before, snapshot(out / os.path.relpath(src, "/")))


def _before_open(monkeypatch: pytest.MonkeyPatch, victim: Path, act: Callable[[], object]) -> None:
    """Run ``act`` once, between the walker's lstat of ``victim`` and the reader's open."""
    original = content.open_for_reading
    done: list[bool] = []

    def open_for_reading(path: bytes) -> int:
        if path == os.fsencode(victim) and not done:
            done.append(True)
            act()
        return original(path)

    monkeypatch.setattr(reading, "open_for_reading", open_for_reading)
    # the compiled read opens without it: its own tests change files before it reads them
    # (test_smallread.py), and it leaves such files to the path under test here
    monkeypatch.setattr(reading, "_smallread", None)


def test_file_changed_after_the_walker_saw_it(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader's fstat, not the walker's lstat, decides what is recorded."""
    src = tmp_path / "src"
    src.mkdir()
    victim = src / "grows"
    victim.write_bytes(b"old")
    _before_open(monkeypatch, victim, lambda: victim.write_bytes(b"new and longer"))
    summary = backup_files(vault, BackupOptions([str(src)], source="grow"))
    assert summary.errors == [] and summary.inconsistent == []
    out = tmp_path / "out"
    restore_files(vault, vault.resolve_point(summary.point_id), RestoreOptions(out))
    restored = out / os.path.relpath(victim, "/")
    assert restored.read_bytes() == b"new and longer"
    assert restored.stat().st_mtime_ns == victim.stat().st_mtime_ns


def test_file_replaced_by_a_fifo_after_the_walker_saw_it(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    victim = src / "swapped"
    victim.write_bytes(b"data")
    (src / "other").write_bytes(b"other")

    def swap() -> None:
        victim.unlink()
        os.mkfifo(victim)

    _before_open(monkeypatch, victim, swap)
    summary = backup_files(vault, BackupOptions([str(src)], source="swap"))
    assert summary.errors == [(str(victim), "no longer a regular file")]
    assert summary.files == 1  # "other"; the backup went on


def _xattrs_of(path: Path) -> dict[str, bytes]:
    return {k: os.getxattr(path, k) for k in os.listxattr(path)}


def test_unchanged_files_take_their_xattrs_from_the_cache(tmp_path: Path, vault: Vault) -> None:
    """setxattr moves ctime, so a row that still matches has the file's xattrs: they are not
    listed again; a change is seen, and a row whose xattrs were edited without the key is not
    trusted."""
    src = tmp_path / "src"
    src.mkdir()
    a, b = src / "a", src / "b"
    a.write_bytes(b"A" * 5000)
    b.write_bytes(b"B" * 5000)
    os.setxattr(a, "user.one", b"1")
    os.setxattr(a, "trusted.two", bytes(range(256)))
    time.sleep(0.2)
    opts = BackupOptions([str(src)], source="s")
    backup_files(vault, opts)
    db_path = cache_path(vault.vault_id, "s")
    stored = _cached(db_path)[bytes(src)]
    assert stored[b"b"].xattrs == ()
    assert stored[b"a"].xattrs == (("trusted.two", bytes(range(256))), ("user.one", b"1"))

    def restored(point_id: str) -> Path:
        out = tmp_path / f"out-{point_id[:8]}"
        restore_files(vault, vault.resolve_point(point_id), RestoreOptions(out))
        return out / os.path.relpath(src, "/")

    second = backup_files(vault, opts)
    assert second.files_unchanged == 2 and second.bytes_read == 0
    assert_same(snapshot(src), snapshot(restored(second.point_id)))

    os.setxattr(b, "user.new", b"n")
    os.removexattr(a, "user.one")
    time.sleep(0.2)
    third = backup_files(vault, opts)
    assert third.bytes_read == 10_000  # both read again: their ctime moved
    out = restored(third.point_id)
    assert _xattrs_of(out / "b") == {"user.new": b"n"}
    assert _xattrs_of(out / "a") == {"trusted.two": bytes(range(256))}

    entries = _cached(db_path)[bytes(src)]
    entries[b"a"].xattrs = (("user.evil", b"x"),)
    with sqlite3.connect(db_path) as db:  # edited without the key: the MAC fails
        _rewrite(db, bytes(src), entries, os.urandom(32))
        db.execute("DELETE FROM folders")  # else the folder's row answers for both
    fourth = backup_files(vault, opts)
    assert fourth.bytes_read == 10_000  # both again: their folder's row failed its MAC
    assert fourth.files_new == 2  # a rejected row counts as no row
    assert _xattrs_of(restored(fourth.point_id) / "a") == {"trusted.two": bytes(range(256))}


_xattr_names = st.text(
    st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=40
).map(lambda s: "user." + s)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_xattr_names, st.binary(max_size=300)), max_size=6))
def test_xattrs_survive_the_cache_encoding(pairs: list[tuple[str, bytes]]) -> None:
    xattrs = tuple(sorted(dict(pairs).items()))
    blob = encode_xattrs(xattrs)
    assert (blob == b"") == (not xattrs)
    assert decode_xattrs(blob) == xattrs
