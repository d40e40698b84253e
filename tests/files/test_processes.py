"""Files backups with worker processes (files/procpool.py, procwork.py): the same point as
without them, the files cache and incrementals through them, and a worker's death failing the
backup without a point."""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from strongroom.errors import StrongroomError
from strongroom.files import (
    BackupOptions,
    RestoreOptions,
    backup_files,
    procpool,
    restore_files,
    walkprocs,
)
from strongroom.files.dirstate import DirState
from strongroom.files.reading import FileItem, FileOutcome, FileReader
from strongroom.files.selection import Selection
from strongroom.files.walker import TreeWalker
from strongroom.vault import Vault, check_vault
from strongroom.vault.forget import soft_delete
from strongroom.vault.prune import PruneOptions, prune
from strongroom.vault.settings import change_settings
from tests.files._support import (
    ChildModules,
    assert_same,
    build_every_kind,
    snapshot,
    subtree_of,
    workers_up_before_the_walk,
)


def _opts(tree: Path, source: str, processes: int = 2, **more: Any) -> BackupOptions:
    return BackupOptions([str(tree)], source=source, processes=processes, processes_after=1, **more)


def _tree(root: Path, rng: random.Random) -> Path:
    root.mkdir()
    build_every_kind(root / "kinds")
    for n in range(20):
        many = root / "many" / f"m{n:02}"
        many.mkdir(parents=True)
        for i in range(20):
            (many / f"{i}").write_bytes(b"%d" % (n * 100 + i))
    for a in range(6):
        (root / f"a{a}").mkdir()
        for b in range(rng.randint(0, 5)):
            sub = root / f"a{a}" / f"b{b}"
            sub.mkdir()
            for i in range(rng.randint(0, 40)):
                size = rng.choice((0, 100, 5000, 70_000))
                (sub / f"f{i}").write_bytes(rng.randbytes(size))
        (root / f"a{a}" / "same.txt").write_text("the same in every folder\n" * 100)
    (root / "deep" / "x" / "y" / "z").mkdir(parents=True)
    (root / "deep" / "x" / "y" / "z" / "leaf").write_bytes(b"leaf")
    (root / "skip.tmp").write_bytes(b"excluded")
    (root / "a0" / "skip.tmp").write_bytes(b"excluded too")
    return root


@pytest.fixture(autouse=True)
def workers_up_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    workers_up_before_the_walk(monkeypatch)


@pytest.fixture(autouse=True)
def workers_walk_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every folder after the first goes to a worker, as many as these tests can get: this
    process lists none itself when the workers are full (but in the test that says so)."""
    monkeypatch.setattr(TreeWalker, "helps", False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = _tree(tmp_path / "src", random.Random(19))
    time.sleep(0.2)  # out of the racy window: files changed right before they are read
    return root


def _linked(tree: Path) -> int:
    """Bytes of the tree's other names of hard links (build_every_kind's): read by a process
    unless it read their inode already (files/hardlinks.py)."""
    return 2 * (tree / "kinds" / "small.txt").stat().st_size


def _restore(vault: Vault, point_id: str, out: Path) -> None:
    restore_files(vault, vault.resolve_point(point_id), RestoreOptions(out))


def test_workers_make_the_same_point_as_one_process(
    tmp_path: Path, vault: Vault, tree: Path
) -> None:
    common: dict[str, Any] = {"excludes": ["*.tmp"], "use_cache": False}
    backup_files(vault, _opts(tree, "warm", 0, **common))
    alone = backup_files(vault, _opts(tree, "one", 0, **common))
    shared = backup_files(vault, _opts(tree, "two", **common))
    # directory atimes settled with the first backup and files are read with O_NOATIME:
    # equal trees give the same root chunk, byte for byte
    points = {p.point_id: p for p in vault.points()}
    assert points[alone.point_id].manifest.roots == points[shared.point_id].manifest.roots
    for key in ("files", "dirs", "others", "logical_bytes", "errors", "skipped"):
        assert alone.counts()[key] == shared.counts()[key], key
    # a hard link's names met in two processes are read in each (files/hardlinks.py)
    assert alone.bytes_read <= shared.bytes_read <= alone.bytes_read + _linked(tree)
    assert sorted(alone.skipped) == sorted(shared.skipped)
    assert shared.chunks_new == 0  # everything deduplicated against the earlier points
    assert shared.processes == 2 and shared.worker_dirs > 20
    out = tmp_path / "out"
    _restore(vault, shared.point_id, out)
    want = {k: v for k, v in snapshot(tree, atime=False).items() if not k.endswith(b".tmp")}
    assert_same(want, snapshot(out / tree.relative_to("/"), atime=False))
    report = check_vault(vault, read_data=True)
    assert report.ok, [(p.name, p.message) for p in report.problems]


def test_workers_load_neither_numpy_nor_cryptography(
    tmp_path: Path, vault: Vault, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's share of a backup (listing, chunking, packs, index objects, lookups in the
    loaded index) needs no numpy, and its AES-GCM no cryptography package: they would cost
    each worker 13 and 8.5 MiB, 0.05 and 0.015 CPU s at start (issue 19); a first backup's
    needs no SQLite either."""
    children = ChildModules(tmp_path, monkeypatch)
    first = backup_files(vault, _opts(tree, "np", cache_root=tmp_path / "cache"))
    (tree / "a0" / "same.txt").write_text("changed")
    again = backup_files(vault, _opts(tree, "np", cache_root=tmp_path / "cache"))
    assert first.worker_dirs > 20 and again.worker_dirs > 20 and again.chunks_new > 0
    workers = [m for m in children.processes() if "strongroom.files.workermain" in m]
    assert len(workers) == 4
    assert all("strongroom.vault.index" in m for m in workers)
    assert all("strongroom.malloctune" in m for m in workers)  # thresholds fixed
    assert not any("numpy" in m or "cryptography" in m for m in workers)
    assert not any("multiprocessing" in m or "subprocess" in m for m in workers)
    # a first backup's workers have no cache rows to look up: no SQLite (1.9 MiB each); the
    # second's look rows up (workers exit in order: the first backup's before the second's)
    assert not any("sqlite3" in m or "_sqlite3" in m for m in workers[:2])
    assert all("_sqlite3" in m for m in workers[2:])


def test_this_process_walks_too_when_its_worker_is_full(
    tmp_path: Path, vault: Vault, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker and this process share the walk (the default on two cores): folders go to
    the worker while it has room and are listed here otherwise; the point is the one a
    single process makes, and the files cache works through both."""
    monkeypatch.setattr(TreeWalker, "helps", True)
    common: dict[str, Any] = {"excludes": ["*.tmp"], "cache_root": tmp_path / "cache"}
    backup_files(vault, _opts(tree, "warm", 0, **common))
    alone = backup_files(vault, _opts(tree, "one", 0, **common))
    shared = backup_files(vault, _opts(tree, "two", 1, **common))
    points = {p.point_id: p for p in vault.points()}
    assert points[alone.point_id].manifest.roots == points[shared.point_id].manifest.roots
    for key in ("files", "dirs", "others", "logical_bytes", "errors", "skipped"):
        assert alone.counts()[key] == shared.counts()[key], key
    # a hard link's names met in two processes are read in each (files/hardlinks.py)
    assert alone.bytes_read <= shared.bytes_read <= alone.bytes_read + _linked(tree)
    assert shared.processes == 1 and shared.worker_dirs > 0 and shared.helped_dirs > 0
    again = backup_files(vault, _opts(tree, "two", 1, **common))  # rows from both sides
    assert again.bytes_read == 0 and again.files_unchanged == shared.files
    out = tmp_path / "out"
    _restore(vault, shared.point_id, out)
    want = {k: v for k, v in snapshot(tree, atime=False).items() if not k.endswith(b".tmp")}
    assert_same(want, snapshot(out / tree.relative_to("/"), atime=False))


@pytest.fixture
def given(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The folders handed to workers, in order."""
    handed: list[bytes] = []
    list_dir = procpool.DirWorkers.list_dir

    def record(self: procpool.DirWorkers, tag: int, path: bytes, dev: int, whole: bool) -> None:
        handed.append(path)
        list_dir(self, tag, path, dev, whole)

    monkeypatch.setattr(procpool.DirWorkers, "list_dir", record)
    return handed


def test_workers_take_the_shallowest_folders_and_this_process_the_deepest(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch, given: list[bytes]
) -> None:
    """Work stealing: a worker with room gets the bottom of the walk's stack (the folders
    met first, so the biggest subtrees still pending) while this process walks from its top.
    From the top, a tree of many small folders went to the worker a folder or two at a time.
    The point is the one a single process makes."""
    monkeypatch.setattr(TreeWalker, "helps", True)
    root = tmp_path / "src"
    root.mkdir()
    for i in range(30):  # enough to read that the workers start once this folder is listed
        (root / f"f{i}").write_bytes(b"%d" % i)
    for a in range(6):
        for b in range(3):
            for c in range(3):
                leaf = root / f"a{a}" / f"b{b}" / f"c{c}"
                leaf.mkdir(parents=True)
                (leaf / "f").write_bytes(b"%d %d %d" % (a, b, c))
    time.sleep(0.2)  # out of the racy window
    alone = backup_files(vault, _opts(root, "one", 0))
    opts = BackupOptions([str(root)], source="two", processes=1, processes_after=30)
    shared = backup_files(vault, opts)
    top = os.fsencode(root)
    # this process listed the root, then the workers started: its last subfolders by name,
    # the stack's bottom, fill the worker's two places while this process walks a0
    assert given[:2] == [top + b"/a5", top + b"/a4"]
    assert shared.worker_dirs == len(given) and shared.helped_dirs > 0
    points = {p.point_id: p for p in vault.points()}
    assert points[alone.point_id].manifest.roots == points[shared.point_id].manifest.roots


def test_a_named_path_at_the_bottom_of_the_stack_holds_nothing_up(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch, given: list[bytes]
) -> None:
    """Two paths named on the command line: the second's folder waits at the stack's bottom
    to be walked here (a named path is listed by this process), and the first's subfolders
    above it still go to the worker."""
    monkeypatch.setattr(TreeWalker, "helps", True)
    first, second = tmp_path / "one" / "deep", tmp_path / "two" / "b"
    for n in range(4):
        (first / f"s{n}").mkdir(parents=True)
        (first / f"s{n}" / "f").write_bytes(b"%d" % n)
    second.mkdir(parents=True)
    (second / "f").write_bytes(b"b")
    time.sleep(0.2)  # out of the racy window
    opts = BackupOptions([str(first), str(second)], source="two", processes=1, processes_after=1)
    done = backup_files(vault, opts)
    assert os.fsencode(first) in given and done.files == 5


def test_first_backup_with_workers_then_cache_and_one_percent(
    tmp_path: Path, vault: Vault, tree: Path
) -> None:
    opts = _opts(tree, "inc", cache_root=tmp_path / "cache")
    first = backup_files(vault, opts)
    assert first.chunks_new > 0 and first.files_new == first.files
    assert first.worker_dirs > 20
    again = backup_files(vault, opts)  # the same handle: it adopted the workers' index
    assert again.bytes_read == 0
    assert again.data_added == again.tree_bytes_added  # only trees (directory atimes moved)
    assert again.files_unchanged == first.files
    changed = sorted(tree.glob("a*/b*/f*"))[:5]
    for p in changed:
        p.write_bytes(p.read_bytes() + b"changed")
    third = backup_files(vault, opts)
    assert third.files_changed == len(changed)
    assert third.files_unchanged == first.files - len(changed)
    out = tmp_path / "out"
    _restore(vault, third.point_id, out)
    assert_same(snapshot(tree, atime=False), snapshot(out / tree.relative_to("/"), atime=False))
    report = check_vault(vault, read_data=True)
    assert report.ok, [(p.name, p.message) for p in report.problems]


def test_workers_write_and_reuse_folder_rows(tmp_path: Path, vault: Vault, tree: Path) -> None:
    """Folders a worker walks get folder rows (files/foldercache.py), which the next backup's
    workers reuse: the same trees, nothing read, nothing built but the folders done one level
    at a time (their parent builds them, without a row)."""
    opts = _opts(tree, "rows", cache_root=tmp_path / "cache")
    first = backup_files(vault, opts)
    assert first.worker_dirs > 20 and first.dirs_reused == 0
    second = backup_files(vault, opts)
    assert second.worker_dirs > 0 and second.bytes_read == 0
    assert second.dirs_reused >= 40  # of 56: not kinds (its socket), nor those one level
    assert subtree_of(vault, second.point_id, tree) == subtree_of(vault, first.point_id, tree)
    assert (second.files, second.files_unchanged) == (first.files, first.files)
    assert second.logical_bytes == first.logical_bytes
    point = vault.resolve_point(second.point_id)
    out = tmp_path / "out"
    _restore(vault, point.point_id, out)
    assert_same(snapshot(tree), snapshot(out / tree.relative_to("/")))


def test_after_a_prune_workers_check_the_rows_they_read(
    tmp_path: Path, vault: Vault, tree: Path, reopen: Callable[[], Vault]
) -> None:
    """The parent drops every folder row after a prune, but in its own transaction: workers
    still read the committed rows, and check each one's chunks against the index."""
    opts = _opts(tree, "pruned", cache_root=tmp_path / "cache")
    first = backup_files(vault, opts)
    pruner = reopen()
    change_settings(pruner, soft_delete_days=0)
    for point in pruner.points():
        soft_delete(pruner, point, "test")
    assert prune(pruner, PruneOptions(grace_seconds=0)).packs_deleted
    again = reopen()
    after = backup_files(again, opts)
    assert after.worker_dirs > 20 and after.dirs_reused == 0
    assert abs(after.bytes_read - first.bytes_read) <= _linked(tree)  # every file read again
    report = check_vault(again, read_data=True)
    assert report.ok, [(p.name, p.message) for p in report.problems]
    out = tmp_path / "out"
    _restore(again, after.point_id, out)
    assert_same(snapshot(tree), snapshot(out / tree.relative_to("/")))


def test_a_mount_point_inside_stays_empty_with_one_file_system(
    tmp_path: Path, vault: Vault, tree: Path
) -> None:
    mnt = tree / "a1" / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mnt)], check=True)
    try:
        (mnt / "other-fs").write_bytes(b"not ours")
        opts = _opts(tree, "x", one_file_system=True)
        s = backup_files(vault, opts)
        out = tmp_path / "out"
        _restore(vault, s.point_id, out)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    restored = out / tree.relative_to("/") / "a1" / "mnt"
    assert restored.is_dir() and not list(restored.iterdir())
    assert (out / tree.relative_to("/") / "deep/x/y/z/leaf").read_bytes() == b"leaf"


def test_a_worker_killed_fails_the_backup_and_commits_nothing(
    vault: Vault, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = [p.point_id for p in vault.points()]
    monkeypatch.setenv("STRONGROOM_FAILPOINT", "procwork-dir@3")  # SIGKILL at its 3rd folder
    with pytest.raises(StrongroomError, match="backup worker process stopped"):
        backup_files(vault, _opts(tree, "killed"))
    monkeypatch.delenv("STRONGROOM_FAILPOINT")
    assert [p.point_id for p in vault.points()] == before
    assert check_vault(vault).ok
    ok = backup_files(vault, _opts(tree, "killed"))
    assert ok.errors == [] and ok.point_id in [p.point_id for p in vault.points()]


def test_an_unchanged_tree_starts_no_workers(tmp_path: Path, vault: Vault, tree: Path) -> None:
    """Workers start once the walk has met ``processes_after`` entries, a third of them files
    to read: the first backup gets them, an unchanged one (nothing to read) does not."""
    opts = BackupOptions(
        [str(tree)], source="u", cache_root=tmp_path / "c", processes=2, processes_after=60
    )
    first = backup_files(vault, opts)
    assert first.processes == 2 and first.worker_dirs > 0
    again = backup_files(vault, opts)
    assert again.processes == 0 and again.files_unchanged == first.files


def test_folders_listed_again_in_a_big_tree_start_workers(
    tmp_path: Path, vault: Vault, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing to read, an incremental whose changes touch many folders (each listed and
    encoded again entry by entry) starts workers in a big tree, not in a small one, and never
    for an unchanged tree; the point is the tree as it is."""
    opts = BackupOptions(
        [str(tree)], source="u", cache_root=tmp_path / "c", processes=2, processes_after=60
    )
    first = backup_files(vault, opts)
    for folder in sorted((tree / "many").iterdir()):
        (folder / "link").symlink_to("nowhere")  # the folder changed, no file to read
    small = backup_files(vault, opts)  # this tree is far below walkprocs.BIG_TREE
    assert small.processes == 0 and small.files_unchanged == first.files
    monkeypatch.setattr(walkprocs, "BIG_TREE", 100)  # now the test tree counts as big
    assert backup_files(vault, opts).processes == 0  # unchanged: nothing listed again
    for folder in sorted((tree / "many").iterdir()):
        (folder / "link").unlink()
        (folder / "link2").symlink_to("elsewhere")
    big = backup_files(vault, opts)
    assert big.processes == 2 and big.worker_dirs > 0
    assert big.files_unchanged == first.files and big.bytes_read == 0
    out = tmp_path / "out"
    _restore(vault, big.point_id, out)
    assert_same(snapshot(tree, atime=False), snapshot(out / tree.relative_to("/"), atime=False))


def test_a_worker_reads_the_files_of_a_folder_this_process_lists(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One flat folder: the worker starts while this process lists it (not once it is done),
    and its files go to the worker in batches whenever it has room.  The point is the one a
    single process makes; the cache rows this process keeps for them serve the next backup."""
    monkeypatch.setattr(TreeWalker, "helps", True)
    flat = tmp_path / "flat"
    flat.mkdir()
    rng = random.Random(23)
    for i in range(1200):
        (flat / f"f{i:05}").write_bytes(rng.randbytes(rng.choice((0, 60, 3000, 70_000))))
    (flat / "big").write_bytes(rng.randbytes(3 << 20))
    time.sleep(0.2)  # out of the racy window
    # they start at the 300th entry: in the middle of the folder, which is this process's
    common: dict[str, Any] = {"cache_root": tmp_path / "cache", "processes_after": 300}
    backup_files(vault, BackupOptions([str(flat)], source="warm", processes=0, **common))
    alone = backup_files(vault, BackupOptions([str(flat)], source="one", processes=0, **common))
    two = BackupOptions([str(flat)], source="two", processes=1, **common)
    shared = backup_files(vault, two)
    assert shared.processes == 1 and shared.worker_dirs == 0
    assert 100 < shared.worker_reads < shared.files
    points = {p.point_id: p for p in vault.points()}
    assert points[alone.point_id].manifest.roots == points[shared.point_id].manifest.roots
    for key in ("files", "files_new", "logical_bytes", "bytes_read", "errors"):
        assert alone.counts()[key] == shared.counts()[key], key
    again = backup_files(vault, two)
    assert again.bytes_read == 0 and again.files_unchanged == shared.files
    out = tmp_path / "out"
    _restore(vault, shared.point_id, out)
    assert_same(snapshot(flat, atime=False), snapshot(out / flat.relative_to("/"), atime=False))


def test_a_big_file_read_here_does_not_hold_up_the_worker(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While this process reads a big file itself, it takes the worker's answers and hands it
    the folders waiting between the file's chunks, not only at its end: on /usr the worker
    had sat idle for the whole of a 128 MiB file."""
    root = tmp_path / "src"
    for n in range(30):
        (root / f"s{n:02}").mkdir(parents=True)
        for i in range(10):
            (root / f"s{n:02}" / f"{i}").write_bytes(b"%d" % (n * 100 + i))
    (root / "zbig").mkdir()
    letters = bytes(97 + i % 26 for i in range(256))  # text-like: zstd takes its time
    (root / "zbig" / "big").write_bytes(os.urandom(48 << 20).translate(letters))
    seen: dict[str, int] = {}
    walkers: list[TreeWalker] = []
    delegate, one = TreeWalker._delegate, FileReader.one

    def not_zbig(self: TreeWalker, d: DirState, sel: Selection | None, dev: int) -> bool:
        walkers.append(self)
        return not d.path.endswith(b"/zbig") and delegate(self, d, sel, dev)

    def watched(self: FileReader, item: FileItem) -> FileOutcome:
        if item.node.name != b"big":
            return one(self, item)
        walker = walkers[0]
        seen["before"] = walker.summary.worker_dirs
        out = one(self, item)
        seen["after"] = walker.summary.worker_dirs
        return out

    monkeypatch.setattr(TreeWalker, "_delegate", not_zbig)
    monkeypatch.setattr(TreeWalker, "_read_remote", lambda self, items: False)
    monkeypatch.setattr(FileReader, "one", watched)
    done = backup_files(vault, _opts(root, "big", 1, use_cache=False))
    assert done.worker_dirs == 31 and done.files == 301  # the top folder, then 30 of its 31
    assert seen["after"] > seen["before"]  # answers taken while the big file was read
    out = tmp_path / "out"
    _restore(vault, done.point_id, out)
    assert_same(snapshot(root, atime=False), snapshot(out / root.relative_to("/"), atime=False))


def test_workers_exit_once_flushed(tmp_path: Path, vault: Vault) -> None:
    """A worker's input ends with its flush: it exits while the parent saves the point and
    commits the files cache, not after."""
    from strongroom.files.procpool import DirWorkers

    handoff = vault.handoff()
    assert handoff is not None
    opts = BackupOptions([str(tmp_path)], source="s", processes=0, workers=0, use_cache=False)
    procs = DirWorkers(handoff, opts, 1)
    try:
        procs.wait_ready(60)
        procs.start_flush()
        assert procs.finish_flush().index_names == []  # it wrote nothing
        assert procs.workers[0].proc.wait(timeout=10) == 0
    finally:
        procs.close()
