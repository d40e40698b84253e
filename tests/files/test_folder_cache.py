"""The files cache's folder rows (files/foldercache.py): an unchanged folder reuses its tree,
and nothing a folder row says can make a backup differ from one built from scratch."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strongroom.files import BackupOptions, RestoreOptions, backup_files, foldercache, restore_files
from strongroom.files.backuptypes import BackupSummary
from strongroom.files.cachepath import cache_path
from strongroom.files.foldercache import FOLDER_COLUMNS, FolderRows, folder_mac, prepare_folder
from strongroom.files.tree import TreeReader, root_node
from strongroom.vault import Vault, check_vault
from strongroom.vault.forget import soft_delete
from strongroom.vault.prune import PruneOptions, prune
from strongroom.vault.settings import change_settings
from tests.files._support import assert_same, snapshot, subtree_of

RACY_S = 0.12  # past reading.RACY_NS: files changed just before a backup are not cached


def _tree(root: Path) -> Path:
    """Folders three deep, with files, a symlink, a FIFO, xattrs, a hard link and a file of
    holes only."""
    for top in ("a", "b"):
        for sub in ("x", "y"):
            d = root / top / sub
            d.mkdir(parents=True)
            for i in range(3):
                (d / f"f{i}").write_bytes(f"{top}{sub}{i}".encode() * 500)
    (root / "top.txt").write_text("top")
    os.symlink("top.txt", root / "link")
    os.mkfifo(root / "a" / "pipe")
    os.setxattr(root / "b" / "x", "user.note", b"folder xattr")
    os.link(root / "a" / "x" / "f0", root / "b" / "hard")
    with (root / "b" / "holes").open("wb") as holes:
        holes.truncate(1 << 20)
    time.sleep(RACY_S)
    return root


def _backup(vault: Vault, src: Path, **kw: object) -> BackupSummary:
    summary = backup_files(vault, BackupOptions([str(src)], source="s", **kw))  # type: ignore[arg-type]
    assert summary.errors == []
    return summary


def test_an_unchanged_tree_reuses_every_folder_and_stores_the_same_tree(
    tmp_path: Path, vault: Vault
) -> None:
    src = _tree(tmp_path / "src")
    folders = sum(1 for _ in os.walk(src))  # src and the 6 below it
    first = _backup(vault, src)
    assert first.dirs_reused == 0
    second = _backup(vault, src)
    assert second.dirs_reused == folders
    assert second.bytes_read == 0 and second.tree_bytes_added == 0
    assert second.files == first.files and second.files_unchanged == first.files
    assert (second.dirs, second.others, second.logical_bytes) == (
        first.dirs,
        first.others,
        first.logical_bytes,
    )
    # the same tree as the first backup's: listing moved no folder's atime, and a symlink's
    # atime is recorded as its read left it
    assert subtree_of(vault, second.point_id, src) == subtree_of(vault, first.point_id, src)
    out = tmp_path / "out"
    restore_files(vault, vault.resolve_point(second.point_id), RestoreOptions(out))
    assert_same(snapshot(src), snapshot(out / os.path.relpath(src, "/")))


def test_a_deep_change_rebuilds_its_folders_up_to_the_top_only(
    tmp_path: Path, vault: Vault
) -> None:
    src = _tree(tmp_path / "src")
    _backup(vault, src)
    _backup(vault, src)
    (src / "a" / "x" / "f1").write_bytes(b"changed" * 100)
    time.sleep(RACY_S)
    third = _backup(vault, src)
    # a/x changed; a and src are built again around its new tree; a/y, b, b/x, b/y reused
    assert third.dirs_reused == 4
    assert third.files_changed == 1 and third.bytes_read == 700
    fresh = _backup(vault, src, use_cache=False)
    assert subtree_of(vault, third.point_id, src) == subtree_of(vault, fresh.point_id, src)


def test_a_changed_folder_takes_its_digest_once_and_its_new_row_holds(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder whose row no longer matches keeps the digest the comparison took for its new
    row (a folder of 50,000 files took it twice); one with a symlink takes it again as it is
    built (reading the link may move its atime).  Either row serves the next backup."""
    src = _tree(tmp_path / "src")
    _backup(vault, src)
    added: list[bytes] = []
    add = foldercache.EntriesDigest.add

    def counted(self: foldercache.EntriesDigest, name: bytes, st: os.stat_result) -> None:
        added.append(name)
        add(self, name, st)

    monkeypatch.setattr(foldercache.EntriesDigest, "add", counted)
    (src / "a" / "x" / "f1").write_bytes(b"changed")
    (src / "new.txt").write_text("new")  # src holds the symlink "link"
    time.sleep(RACY_S)
    second = _backup(vault, src)
    assert second.files_changed == 1 and second.files_new == 1
    # a/x compared, then built with that digest; a/y, b/x and b/y compared and reused
    assert added.count(b"f0") == 4
    assert added.count(b"top.txt") == 2  # src: compared, then taken again as built
    third = _backup(vault, src)
    assert third.dirs_reused == 7 and third.bytes_read == 0  # every folder, from its new row


def test_what_lstat_alone_shows_is_seen(tmp_path: Path, vault: Vault) -> None:
    """An atime, an owner, a mode: no content changes, yet each is in the tree."""
    src = _tree(tmp_path / "src")
    _backup(vault, src)
    f = src / "b" / "y" / "f2"
    st = f.stat()
    f.read_bytes()  # relatime: the first read since it was written moves its atime alone
    assert f.stat().st_atime_ns > st.st_atime_ns and f.stat().st_ctime_ns == st.st_ctime_ns
    os.chown(src / "a" / "y" / "f0", 1234, 5678)
    os.chmod(src / "b" / "x", 0o700)
    time.sleep(RACY_S)
    second = _backup(vault, src)
    fresh = _backup(vault, src, use_cache=False)
    assert subtree_of(vault, second.point_id, src) == subtree_of(vault, fresh.point_id, src)
    # b/y, a/y and b (b/x's mode) differ; a and src are built around a/y's new tree
    assert second.dirs_reused == 2  # a/x, and b/x: its own entries did not change
    tree = TreeReader(vault)
    node = tree.lookup(root_node(vault.resolve_point(second.point_id)), str(f))
    assert node is not None and node.atime_ns == f.stat().st_atime_ns


def test_a_tampered_row_is_never_trusted(tmp_path: Path, vault: Vault) -> None:
    src = _tree(tmp_path / "src")
    _backup(vault, src)
    with sqlite3.connect(cache_path(vault.vault_id, "s")) as db:
        # rows swapped between two folders, and counts edited without the key: MACs fail
        by = bytes(src / "b" / "y")
        db.execute("UPDATE folders SET body = body || x'00' WHERE dir = ?", (by,))
        ax, ay = bytes(src / "a" / "x"), bytes(src / "a" / "y")
        db.execute("UPDATE folders SET dir = ? WHERE dir = ?", (b"swap", ax))
        db.execute("UPDATE folders SET dir = ? WHERE dir = ?", (ax, ay))
        db.execute("UPDATE folders SET dir = ? WHERE dir = ?", (ay, b"swap"))
        (body,) = db.execute(
            "SELECT body FROM folders WHERE dir = ?", (bytes(src / "b"),)
        ).fetchone()
        more = bytes([body[0] + 1]) + body[1:]  # its file count, one more
        db.execute("UPDATE folders SET body = ? WHERE dir = ?", (more, bytes(src / "b")))
        # a column of the wrong type (an edited file): ignored, never a crash
        db.execute("UPDATE folders SET body = 'text' WHERE dir = ?", (bytes(src / "b" / "x"),))
    second = _backup(vault, src)
    # b/y, a/x, a/y, b/x and b are built again (from their file rows: nothing is read); a
    # and src reuse theirs, since their subfolders' trees came out the same
    assert second.dirs_reused == 2 and second.bytes_read == 0
    fresh = _backup(vault, src, use_cache=False)
    assert subtree_of(vault, second.point_id, src) == subtree_of(vault, fresh.point_id, src)
    assert second.files == fresh.files and second.logical_bytes == fresh.logical_bytes


def test_rows_are_found_past_many_windows_and_out_of_key_order(
    tmp_path: Path, vault: Vault
) -> None:
    """Rows are read 256 at a time in key order, and a walk is not quite in key order: "b-x"
    sorts before "b/c" as a path but is walked after b's subtree."""
    src = tmp_path / "src"
    for name in ("b", "b-x", "b0", "b.y"):
        for i in range(150):
            d = src / name / f"{i:03}"
            d.mkdir(parents=True)
            (d / "f").write_bytes(name.encode())
    time.sleep(RACY_S)
    first = _backup(vault, src)
    second = _backup(vault, src)
    assert second.dirs_reused == 605 == sum(1 for _ in os.walk(src))
    assert subtree_of(vault, second.point_id, src) == subtree_of(vault, first.point_id, src)


def test_after_a_prune_no_row_is_trusted_until_checked(
    tmp_path: Path, vault: Vault, reopen: Callable[[], Vault]
) -> None:
    """Index objects never change and only prune and repair remove one: while all those of
    the last commit are there, a reuse needs no chunk check.  After a prune that took every
    chunk of the tree, every folder row is dropped and the files are read again."""
    src = _tree(tmp_path / "src")
    first = _backup(vault, src)
    assert _backup(vault, src).dirs_reused == 7  # rows trusted: the same index objects
    pruner = reopen()
    change_settings(pruner, soft_delete_days=0)
    for point in pruner.points():
        soft_delete(pruner, point, "test")
    assert prune(pruner, PruneOptions(grace_seconds=0)).packs_deleted
    again = reopen()
    after = _backup(again, src)
    assert after.dirs_reused == 0 and after.bytes_read == first.bytes_read
    report = check_vault(again, read_data=True)
    assert report.ok, [(p.name, p.message) for p in report.problems]
    fresh = _backup(again, src, use_cache=False)
    assert subtree_of(again, after.point_id, src) == subtree_of(again, fresh.point_id, src)
    assert _backup(again, src).dirs_reused == 7  # rows again, under the new index objects


def test_an_edited_record_of_index_objects_drops_the_rows(tmp_path: Path, vault: Vault) -> None:
    src = _tree(tmp_path / "src")
    _backup(vault, src)
    with sqlite3.connect(cache_path(vault.vault_id, "s")) as db:
        db.execute("UPDATE meta SET value = ? WHERE name = 'index'", (b"",))  # "none needed"
    assert _backup(vault, src).dirs_reused == 0  # its MAC failed: rows dropped, rebuilt
    assert _backup(vault, src).dirs_reused == 7


def test_changed_excludes_and_options_are_seen(tmp_path: Path, vault: Vault) -> None:
    src = _tree(tmp_path / "src")
    _backup(vault, src)
    _backup(vault, src)
    skip = _backup(vault, src, excludes=["f1"])
    assert skip.dirs_reused == 0 and skip.files == _backup(vault, src).files - 4
    back = _backup(vault, src)  # the rows of the run without the exclude still hold
    assert back.dirs_reused == 7
    nodump = _backup(vault, src, exclude_nodump=True)
    assert nodump.dirs_reused == 0  # another option: other trees, whatever the entries


# --- a property: any sequence of changes, the same tree as a backup from scratch -------------

_CHANGES = (
    "rewrite-same-size-and-mtime",
    "append",
    "chmod",
    "chown",
    "atime",
    "xattr",
    "create",
    "delete",
    "mkdir",
    "rmtree",
    "rename",
    "symlink",
    "hardlink",
)


def _pick(root: Path, n: int, want_dir: bool) -> Path:
    found = sorted(p for p in root.rglob("*") if not p.is_symlink() and p.is_dir() == want_dir)
    if want_dir:
        found.insert(0, root)
    return found[n % len(found)] if found else root


def _change(root: Path, kind: str, n: int) -> None:
    f, d = _pick(root, n, False), _pick(root, n, True)
    is_file = f != root and f.is_file() and not f.is_symlink()
    if kind == "rewrite-same-size-and-mtime" and is_file:
        st = f.stat()
        f.write_bytes(bytes((n + i) % 251 for i in range(st.st_size)))
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # only ctime tells
    elif kind == "append" and is_file:
        with f.open("ab") as out:
            out.write(b"+")
    elif kind == "chmod":
        os.chmod(d, 0o700 + n % 0o77)
    elif kind == "chown" and is_file:
        os.chown(f, 1000 + n % 3, 1000)
    elif kind == "atime" and is_file:
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns - 1 - n, st.st_mtime_ns))
    elif kind == "xattr":
        os.setxattr(d, "user.n", str(n).encode())
    elif kind == "create":
        (d / f"new{n}").write_bytes(b"n" * (n % 5000))
    elif kind == "delete" and is_file:
        f.unlink()
    elif kind == "mkdir":
        (d / f"dir{n}").mkdir(exist_ok=True)
    elif kind == "rmtree" and d != root:
        shutil.rmtree(d)
    elif kind == "rename" and is_file:
        f.rename(d / f"moved{n}")
    elif kind == "symlink":
        link = d / "lnk"
        if link.is_symlink():
            link.unlink()
        os.symlink(f"target{n}", link)
    elif kind == "hardlink" and is_file and not (d / f"hl{n}").exists():
        os.link(f, d / f"hl{n}")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(_CHANGES), st.integers(0, 10**6), st.booleans()),
        min_size=1,
        max_size=5,
    )
)
def test_any_changes_give_the_tree_of_a_backup_from_scratch(
    vault: Vault, steps: list[tuple[str, int, bool]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = _tree(Path(tmp) / "src")
        _backup(vault, src)
        _backup(vault, src)
        for kind, n, settle in steps:
            _change(src, kind, n)
            if settle:  # else racily clean files: not cached, their folders get no row
                time.sleep(RACY_S)
            cached = _backup(vault, src)
            fresh = _backup(vault, src, use_cache=False)
            assert subtree_of(vault, cached.point_id, src) == subtree_of(
                vault, fresh.point_id, src
            ), (
                kind,
                n,
            )
            assert (cached.files, cached.dirs, cached.others, cached.logical_bytes) == (
                fresh.files,
                fresh.dirs,
                fresh.others,
                fresh.logical_bytes,
            )


_names = st.binary(min_size=1, max_size=40)
_ids = st.binary(min_size=32, max_size=32)


@given(
    directory=st.binary(min_size=1, max_size=80),
    subs=st.lists(st.tuples(_names, _ids), max_size=5),
    chunks=st.lists(_ids, max_size=5),
    counts=st.tuples(*[st.integers(0, 2**62)] * 3),
    seen=st.integers(0, 2**40),
)
def test_a_packed_row_reads_back_as_written(
    directory: bytes,
    subs: list[tuple[bytes, bytes]],
    chunks: list[bytes],
    counts: tuple[int, int, int],
    seen: int,
) -> None:
    """A folder row's fields go into one body (four columns: a first backup writes a row per
    folder); they come back the same under the key, and not at all under another key, for
    another folder or with a byte of the body changed."""
    key, digest, tree = b"k" * 32, b"d" * 32, b"t" * 32
    values = prepare_folder(key, directory, digest, tree, subs, chunks, counts, seen)
    assert len(values) == FOLDER_COLUMNS
    _, body, _, mac = values
    assert isinstance(body, bytes) and isinstance(mac, bytes)
    rows = FolderRows(key, stale_before=seen + 1)
    row = rows._check(directory, (body, seen, mac))
    assert row is not None and row.stale
    assert (row.digest, row.tree, row.subs, row.chunk_ids()) == (digest, tree, subs, chunks)
    assert (row.files, row.others, row.nbytes) == counts
    assert FolderRows(b"x" * 32, 0)._check(directory, (body, seen, mac)) is None
    assert rows._check(directory + b"/", (body, seen, mac)) is None
    for at in (0, len(body) // 2, len(body) - 1):
        edited = body[:at] + bytes([body[at] ^ 1]) + body[at + 1 :]
        assert rows._check(directory, (edited, seen, mac)) is None
    assert rows._check(directory, (body + b"\0", seen, mac)) is None
    assert rows._check(directory, ("text", seen, mac)) is None


@given(st.binary(max_size=200))
def test_any_body_under_a_good_mac_unpacks_or_is_refused(body: bytes) -> None:
    """Only the key's holder can write a body its MAC accepts; even a wrong one is refused
    (or read) without an exception."""
    key = b"k" * 32
    mac = folder_mac(key, b"/d", body)
    row = FolderRows(key, 0)._check(b"/d", (body, 0, mac))
    assert row is None or len(row.tree) == 32
