"""Files restores with worker processes (files/restoreprocs.py, restorework.py): the same tree
as with threads, on every kind of entry and every conflict policy; started on their own for a
big point of small files only; a worker's death failing the restore with nothing left under a
temporary name."""

from __future__ import annotations

import importlib
import os
import random
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strongroom.errors import StrongroomError
from strongroom.files import (
    BackupOptions,
    RestoreOptions,
    backup_files,
    placing,
    restore_files,
    restorebatch,
    restoretree,
    restorework,
    staged,
)
from strongroom.files.channel import Channel, wait
from strongroom.files.nodes import TEMP_PREFIX, Node
from strongroom.files.placing import TempNames
from strongroom.files.restoreprocs import ProcessContents, WorkerSetup
from strongroom.files.restoretree import restore_tree
from strongroom.files.restoretypes import RestoreSummary
from strongroom.files.tree import TreeReader, root_node
from strongroom.files.workerproc import WorkerPool, WorkerProcess
from strongroom.vault import Vault
from tests.files._support import ChildModules, assert_same, build_every_kind, snapshot

_TWO_CORES = len(os.sched_getaffinity(0)) >= 2


def _tree(root: Path, folders: int, files: int) -> Path:
    """Every kind of entry, and folders of small files (hard links across folders too)."""
    root.mkdir(parents=True)
    build_every_kind(root / "kinds")
    rng = random.Random(7)
    for d in range(folders):
        folder = root / "many" / f"d{d:03}"
        folder.mkdir(parents=True)
        for i in range(files):
            (folder / f"f{i:03}").write_bytes(rng.randbytes(rng.choice((0, 10, 700, 9000))))
    os.link(root / "many" / "d000" / "f001", root / "many" / f"d{folders - 1:03}" / "linked")
    os.utime(root / "many" / f"d{folders - 1:03}", ns=(10**18, 10**18))
    return root


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tree(tmp_path_factory.mktemp("src") / "tree", folders=30, files=40)


def _backup(vault: Vault, source: Path) -> str:
    opts = BackupOptions([str(source)], source="procs", processes=0, use_cache=False)
    return backup_files(vault, opts).point_id


def _restore(
    vault: Vault, point: str, out: Path, processes: int | None, **more: object
) -> RestoreSummary:
    opts = RestoreOptions(out, processes=processes, **more)  # type: ignore[arg-type]
    return restore_files(vault, vault.resolve_point(point), opts)


def _temporaries(root: Path) -> list[str]:
    found = []
    for _dirpath, dirnames, filenames in os.walk(root):
        found += [n for n in dirnames + filenames if os.fsencode(n).startswith(TEMP_PREFIX)]
    return found


@pytest.fixture(autouse=True)
def workers_up_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers ready before the first folder or batch goes out: in trees this small the
    parent would otherwise plan and write all of a restore by subtrees while they start."""
    send = ProcessContents.send_setup

    def ready_then_send(self: ProcessContents, setup: WorkerSetup) -> None:
        deadline = time.monotonic() + 60
        while not all(w.ready for w in self.pool.workers) and time.monotonic() < deadline:
            assert self.pool.answers(0.1) == []
        send(self, setup)

    monkeypatch.setattr(ProcessContents, "send_setup", ready_then_send)


@pytest.fixture
def subtree_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many restores went by subtrees (the workers planning: restoretree.py)."""
    runs: list[int] = []

    def counted(*args: Any) -> Any:
        runs.append(1)
        return restore_tree(*args)

    monkeypatch.setattr("strongroom.files.restoretree.restore_tree", counted)
    return runs


@pytest.mark.parametrize("by", ["subtrees", "batches"])
def test_workers_restore_what_threads_restore(
    tmp_path: Path, vault: Vault, source: Path, subtree_runs: list[int], by: str
) -> None:
    """The whole point into an empty target goes by subtrees; a selection (here all of the
    source) by batches of a plan the parent made."""
    point = _backup(vault, source)
    selectors = [] if by == "subtrees" else [str(source)]
    by_threads = _restore(vault, point, tmp_path / "threads", 0, selectors=selectors)
    by_workers = _restore(vault, point, tmp_path / "workers", 2, selectors=selectors)
    assert len(subtree_runs) == (1 if by == "subtrees" else 0)
    assert by_threads.processes == 0 and by_workers.processes == 2
    assert by_workers.errors == by_threads.errors == []
    for key in ("files", "dirs", "links", "others", "bytes_written"):
        assert getattr(by_workers, key) == getattr(by_threads, key), key
    rel = source.relative_to("/")
    want = snapshot(source, atime=False)
    assert_same(want, snapshot(tmp_path / "threads" / rel, atime=False))
    assert_same(want, snapshot(tmp_path / "workers" / rel, atime=False))
    assert_same(snapshot(tmp_path / "threads"), snapshot(tmp_path / "workers"))  # ancestors too
    linked = tmp_path / "workers" / rel / "many"
    assert os.path.samefile(linked / "d000" / "f001", linked / "d029" / "linked")
    assert not _temporaries(tmp_path / "workers")


def test_workers_load_neither_numpy_nor_cryptography(
    tmp_path: Path, vault: Vault, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore's workers read chunks through the loaded index without numpy and decrypt
    them without the cryptography package (13 and 8.5 MiB less per worker, issue 19)."""
    point = _backup(vault, source)
    children = ChildModules(tmp_path, monkeypatch)
    done = _restore(vault, point, tmp_path / "out", 2)
    assert done.processes == 2 and done.errors == []
    workers = [m for m in children.processes() if "strongroom.files.workermain" in m]
    assert len(workers) == 2
    assert all("strongroom.vault.index" in m for m in workers)
    assert all("strongroom.malloctune" in m for m in workers)  # one arena (its module)
    assert not any("numpy" in m or "cryptography" in m for m in workers)
    assert not any("multiprocessing" in m or "subprocess" in m for m in workers)


@pytest.mark.parametrize("by", ["subtrees", "batches"])
def test_a_damaged_chunk_fails_exactly_its_file(
    tmp_path: Path, vault_dir: Path, vault: Vault, source: Path, by: str
) -> None:
    """Files whose chunk is damaged fail, each by its own name, wherever it fell in a batch
    (a worker sorts its batch by pack, and answers by the parent's order)."""
    point = _backup(vault, source)
    trees, root = TreeReader(vault), root_node(vault.resolve_point(point))
    sized = sorted(p for p in (source / "many").glob("d*/f*") if p.stat().st_size == 9000)
    damaged = [sized[3], sized[len(sized) // 2], sized[-2]]
    for path in damaged:
        node = trees.lookup(root, str(path))
        assert node is not None and len(node.chunks) == 1 and node.size > 0
        entry = vault.index.lookup(node.chunks[0])
        assert entry is not None
        pack = vault_dir / "data" / entry.pack.hex()[:2] / entry.pack.hex()
        data = bytearray(pack.read_bytes())
        data[entry.offset + entry.length // 2] ^= 0x40
        pack.write_bytes(data)
    selectors = [] if by == "subtrees" else [str(source)]
    got = _restore(vault, point, tmp_path / "out", 2, selectors=selectors)
    out = tmp_path / "out" / source.relative_to("/")
    failed = sorted(path for path, _reason in got.errors)
    assert failed == sorted(str(tmp_path / "out") + str(p) for p in damaged)
    assert all("cannot read its data" in reason for _path, reason in got.errors)
    for path in damaged:
        assert not (out / path.relative_to(source)).exists()
    intact = sized[4]
    assert (out / intact.relative_to(source)).read_bytes() == intact.read_bytes()


def test_workers_follow_every_conflict_policy(tmp_path: Path, vault: Vault, source: Path) -> None:
    point = _backup(vault, source)
    results: dict[str, list[RestoreSummary]] = {}
    for processes in (0, 2):
        out = tmp_path / f"p{processes}"
        first = _restore(vault, point, out, processes)
        victim = out / source.relative_to("/") / "many" / "d003" / "f004"
        victim.write_bytes(b"changed since")
        again = [
            _restore(vault, point, out, processes, on_conflict=policy)
            for policy in ("skip", "keep-both", "overwrite")
        ]
        assert victim.read_bytes() != b"changed since"  # overwritten by the last
        assert not _temporaries(out)
        results[str(processes)] = [first, *again]
    for threads, workers in zip(results["0"], results["2"], strict=True):
        assert workers.files == threads.files
        assert len(workers.skipped) == len(threads.skipped)
        assert len(workers.kept_both) == len(threads.kept_both)
        assert workers.errors == threads.errors == []
    skip, keep_both = results["2"][1], results["2"][2]
    assert skip.files == 0 and len(skip.skipped) > 1000
    assert len(keep_both.kept_both) == keep_both.files > 1000
    assert_same(snapshot(tmp_path / "p0", atime=False), snapshot(tmp_path / "p2", atime=False))


def test_workers_start_by_themselves_only_for_a_big_point_of_small_files(
    tmp_path: Path, vault: Vault
) -> None:
    src = tmp_path / "big"
    for d in range(40):
        (src / f"d{d:02}").mkdir(parents=True)
        for i in range(80):
            (src / f"d{d:02}" / f"{i}").write_bytes(b"%d" % i)
    point = _backup(vault, src)
    whole = _restore(vault, point, tmp_path / "all", None)
    assert whole.files == 3200
    assert whole.processes == (1 if _TWO_CORES else 0)  # and this process (restoretree.py)
    one_folder = _restore(vault, point, tmp_path / "one", None, selectors=[f"{src}/d07"])
    assert one_folder.files == 80 and one_folder.processes == 0
    assert_same(
        snapshot(src, atime=False), snapshot(tmp_path / "all" / src.relative_to("/"), atime=False)
    )


def test_the_parent_writes_too_when_its_worker_is_full(
    tmp_path: Path, vault: Vault, source: Path
) -> None:
    """One worker and the parent share a restore by subtrees: folders go to the worker while
    it has room and are planned and written by the parent otherwise."""
    point = _backup(vault, source)
    by_threads = _restore(vault, point, tmp_path / "threads", 0)
    shared = _restore(vault, point, tmp_path / "shared", 1)
    assert shared.processes == 1 and 0 < shared.helped_dirs < shared.dirs
    assert shared.to_dict()["helped_dirs"] == shared.helped_dirs  # --json says so too
    assert shared.errors == by_threads.errors == []
    for key in ("files", "dirs", "links", "others", "bytes_written"):
        assert getattr(shared, key) == getattr(by_threads, key), key
    assert_same(snapshot(tmp_path / "threads"), snapshot(tmp_path / "shared"))
    assert not _temporaries(tmp_path / "shared")


def test_folders_go_to_a_worker_a_few_to_a_message(
    tmp_path: Path, vault: Vault, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore by subtrees hands its worker several folders in one message (and takes their
    plans back in one), at most ``_DIRS_A_MESSAGE``; every folder is planned once, by the
    worker or the parent, and the restore is the same as with threads."""
    point = _backup(vault, source)
    sizes: list[int] = []
    submit = WorkerPool.submit

    def counted(self: WorkerPool, request: tuple[Any, ...]) -> None:
        if request[0] == "dirs":
            sizes.append(len(request[1]))
        submit(self, request)

    monkeypatch.setattr(WorkerPool, "submit", counted)
    by_threads = _restore(vault, point, tmp_path / "threads", 0)
    shared = _restore(vault, point, tmp_path / "shared", 1)
    assert max(sizes) > 1 and max(sizes) <= restoretree._DIRS_A_MESSAGE
    assert sum(sizes) + shared.helped_dirs == by_threads.dirs + 1  # the top folder too
    assert shared.errors == by_threads.errors == []
    for key in ("files", "dirs", "links", "others", "bytes_written"):
        assert getattr(shared, key) == getattr(by_threads, key), key
    assert_same(snapshot(tmp_path / "threads"), snapshot(tmp_path / "shared"))


def test_the_parent_feeds_its_worker_between_the_jobs_it_writes(
    tmp_path: Path, vault: Vault, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the parent writes a batch of its own it takes the worker's answers and hands
    out folders between the batch's jobs (not only once the batch is done), on its own
    thread; the restore is the same."""
    point = _backup(vault, source)
    monkeypatch.setattr(restorebatch, "BATCH_FILES", 100)  # the parent's batches: many jobs
    monkeypatch.setattr(restoretree, "_DIRS_AHEAD", 2)  # the worker is full soon
    fed: list[int] = []
    feed = restoretree._TreeRun.feed

    def counted(self: restoretree._TreeRun) -> None:
        fed.append(threading.get_ident())
        feed(self)

    monkeypatch.setattr(restoretree._TreeRun, "feed", counted)
    by_threads = _restore(vault, point, tmp_path / "threads", 0)
    shared = _restore(vault, point, tmp_path / "shared", 1)
    assert shared.processes == 1 and shared.helped_dirs > 0
    assert len(fed) > 2 and set(fed) == {threading.get_ident()}
    assert shared.errors == by_threads.errors == []
    assert shared.files == by_threads.files
    assert_same(snapshot(tmp_path / "threads"), snapshot(tmp_path / "shared"))
    assert not _temporaries(tmp_path / "shared")


def test_a_worker_killed_fails_the_restore_and_leaves_no_temporaries(
    tmp_path: Path, vault: Vault, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point = _backup(vault, source)
    out = tmp_path / "out"
    monkeypatch.setenv("STRONGROOM_FAILPOINT", "restorework-batch")  # SIGKILL at its first
    with pytest.raises(StrongroomError, match="restore worker process stopped"):
        _restore(vault, point, out, 2)
    monkeypatch.delenv("STRONGROOM_FAILPOINT")
    assert not _temporaries(out)
    ok = _restore(vault, point, out, 2)
    assert ok.errors == []
    assert_same(snapshot(source, atime=False), snapshot(out / source.relative_to("/"), atime=False))


@pytest.fixture
def placed_by(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """How this process (the parent: its workers are other processes) put files in place,
    by link or by rename, and on which threads it made batches durable."""
    seen: dict[str, list[str]] = {"linked": [], "renamed": [], "durable_on": []}
    link, rename, durable = placing.link_into_place, placing.rename_into_place, placing.make_durable

    def linked(fd: int, tmp: bytes, dest: bytes) -> str | None:
        seen["linked"].append(os.fsdecode(dest))
        return link(fd, tmp, dest)

    def renamed(tmp: bytes, dest: bytes) -> str | None:
        seen["renamed"].append(os.fsdecode(dest))
        return rename(tmp, dest)

    def made_durable(target: bytes) -> None:
        seen["durable_on"].append(threading.current_thread().name)
        durable(target)

    monkeypatch.setattr("strongroom.files.contents.link_into_place", linked)
    monkeypatch.setattr("strongroom.files.contents.rename_into_place", renamed)
    monkeypatch.setattr("strongroom.files.contents.make_durable", made_durable)
    monkeypatch.setattr("strongroom.files.restorebatch.make_durable", made_durable)
    monkeypatch.setattr(restoretree, "_DIRS_AHEAD", 2)  # the worker is full soon: the parent writes
    return seen


def test_a_restore_by_subtrees_builds_the_tree_in_its_staging_folder_then_moves_it(
    tmp_path: Path,
    vault: Vault,
    source: Path,
    placed_by: dict[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restore by subtrees creates its files at their final names in a tree inside its
    staging folder (no temporary name, no rename, no link; the batch's syncfs on the commit
    thread while the next batch is written) and moves that tree into the target at the end:
    until then the target holds the staging folder alone."""
    point = _backup(vault, source)
    out = tmp_path / "shared"
    seen_before_move: list[list[str]] = []
    move_out = staged.move_out

    def watched(tree: bytes, target: bytes, suffix: bytes) -> staged.Relocation:
        seen_before_move.append(sorted(map(os.fsdecode, os.listdir(target))))
        assert os.listdir(os.path.join(tree, os.fsencode(source.parts[1])))
        return move_out(tree, target, suffix)

    monkeypatch.setattr(staged, "move_out", watched)
    shared = _restore(vault, point, out, 1)
    assert shared.processes == 1 and shared.helped_dirs > 0 and shared.errors == []
    ((staging,),) = seen_before_move
    assert staging.startswith(".strongroom-tmp-staging-")
    # the first members of hard-link groups too (written with the rest), and the links
    assert placed_by["linked"] == placed_by["renamed"] == []
    assert set(placed_by["durable_on"]) == {"files-commit_0"}
    rel = source.relative_to("/")
    assert_same(snapshot(source, atime=False), snapshot(out / rel, atime=False))
    assert not _temporaries(out)


def test_a_folder_of_more_files_than_a_batch_is_written_in_batches(
    tmp_path: Path,
    vault: Vault,
    source: Path,
    placed_by: dict[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each file without a name holds a descriptor until it is linked: a folder of more
    files than a batch (here 40 against 15) is written in batches of at most that many."""
    point = _backup(vault, source)
    monkeypatch.setattr(restorebatch, "BATCH_FILES", 15)
    sizes: list[int] = []
    write = restorebatch.write_files

    def counted(*args: Any) -> restorebatch.Written:
        sizes.append(len(args[3]))
        return write(*args)

    monkeypatch.setattr(restorebatch, "write_files", counted)
    shared = _restore(vault, point, tmp_path / "shared", 1)
    assert shared.errors == [] and sizes and max(sizes) <= 15
    rel = source.relative_to("/")
    assert_same(snapshot(source, atime=False), snapshot(tmp_path / "shared" / rel, atime=False))


@pytest.fixture
def exfat(tmp_path: Path) -> Iterator[Path]:
    """An exFAT file system through FUSE (exfat-fuse): no O_TMPFILE there."""
    if os.geteuid() != 0:
        pytest.skip("loop devices and FUSE mounts need root")
    image, mount = tmp_path / "exfat.img", tmp_path / "exfat"
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.exfat", str(image)], check=True, capture_output=True)
    dev = subprocess.run(
        ["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True
    ).stdout.strip()
    mount.mkdir()
    try:
        subprocess.run(["mount.exfat-fuse", dev, str(mount)], check=True, capture_output=True)
        try:
            yield mount
        finally:
            subprocess.run(["umount", str(mount)], check=True)
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)


@pytest.mark.parametrize("processes", [0, 1])
@pytest.mark.parametrize("empty", [False, True])
def test_a_file_system_without_unnamed_files_gets_named_temporaries(
    tmp_path: Path,
    vault: Vault,
    exfat: Path,
    placed_by: dict[str, list[str]],
    processes: int,
    empty: bool,
) -> None:
    """Where O_TMPFILE is refused (EOPNOTSUPP from FUSE's exFAT) a restore into a folder
    with entries names its files and renames them into place (by threads here, by worker
    processes there), as before; a restore into an empty one, which needs neither, creates
    them in its staged tree there too.  The restores are the same."""
    data = tmp_path / "data"
    rng = random.Random(3)
    for d in range(12):
        (data / f"d{d:02}").mkdir(parents=True)
        for i in range(25):
            (data / f"d{d:02}" / f"f{i:02}").write_bytes(rng.randbytes(rng.choice((0, 90, 5000))))
    point = _backup(vault, data)
    out = exfat / "out"
    if not empty:
        out.mkdir()
        (out / "notes").write_bytes(b"mine")
    summary = _restore(vault, point, out, processes)
    assert summary.processes == processes and summary.files == 300
    assert all("cannot set mode" in r for _, r in summary.errors)  # exFAT: no sticky /tmp
    # the parent's own renames: a worker process renames its files itself
    assert bool(placed_by["renamed"]) == (not empty and processes == 0)
    assert placed_by["linked"] == []
    for path in data.rglob("f*"):
        assert (out / path.relative_to("/")).read_bytes() == path.read_bytes()
    assert not _temporaries(out)


def test_a_restore_asks_for_the_descriptors_its_unnamed_files_hold() -> None:
    """The soft limit on open files is raised towards the hard one when a restore needs
    more; where the hard one is too low, files get temporary names instead."""
    code = (
        "import resource\n"
        "from strongroom.files.placing import descriptors_for\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 8192))\n"
        "print(descriptors_for(2000), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1500))\n"
        "print(descriptors_for(2000), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "3024", "False", "256"]


def _staged_setup(target: Path) -> WorkerSetup:
    """An empty target with a staging folder, and the setup a worker of a restore by
    subtrees gets for it."""
    staging = target / ".strongroom-tmp-staging-00000000"
    staging.mkdir(parents=True)
    return WorkerSetup(
        os.fsencode(target),
        os.fsencode(staging),
        b"00000000",
        target.stat().st_dev,
        verify=False,
        as_root=os.geteuid() == 0,
        durable=True,
    )


def _folder_to_write(tmp_path: Path, vault: Vault, source: Path) -> tuple[Node, Path, WorkerSetup]:
    """The point's ``many`` folder, an empty target with a staging folder, and the setup a
    worker of a restore by subtrees gets for it."""
    point = _backup(vault, source)
    trees, root = TreeReader(vault), root_node(vault.resolve_point(point))
    many = trees.lookup(root, str(source / "many"))
    assert many is not None
    target = tmp_path / "out"
    setup = _staged_setup(target)
    return many, target, setup


def test_an_idle_writer_writes_its_pending_files_and_holds_them_until_a_batch(
    tmp_path: Path, vault: Vault, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker (or the parent) with nothing asked of it writes a job's worth of its pending
    files at a time; they are made durable and put in place only once a batch's worth is
    written (one syncfs for all), and counted then."""
    monkeypatch.setattr(restorebatch, "BATCH_FILES", 100)
    monkeypatch.setattr(restorebatch, "_IDLE_FILES", 30)
    many, target, setup = _folder_to_write(tmp_path, vault, source)
    worker = restorebatch.TreeWorker(vault, setup, TempNames(setup.staging, setup.token, -1))
    try:
        # d000 and d029 hold members of a hard-link group (the parent's): not those
        folders = worker.plan_dir(many, os.fsencode(target)).subdirs[1:4]
        for node in folders:
            worker.plan_dir(node, os.fsencode(target / os.fsdecode(node.name)))
        assert len(worker.pending) == 120

        def placed() -> int:
            return sum(len(os.listdir(target / os.fsdecode(n.name))) for n in folders)

        for left in (90, 60, 30):
            assert worker.idle().empty and len(worker.pending) == left and placed() == 0
        first = worker.idle()  # 100 written: handed to the committer
        assert first.empty and worker.pending == []
        done = worker.finish()
        assert done.placed == 120 and done.errors == [] and placed() == 120
    finally:
        worker.close()
    for node in folders:
        for f in (target / os.fsdecode(node.name)).iterdir():
            assert (
                f.read_bytes() == (source / "many" / os.fsdecode(node.name) / f.name).read_bytes()
            )


def test_files_written_and_not_yet_committed_go_when_the_writer_is_closed(
    tmp_path: Path, vault: Vault, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore that fails with files written but not yet handed to the committer closes
    their descriptors (and removes those with names): nothing is left open or behind."""
    monkeypatch.setattr(restorebatch, "_IDLE_FILES", 30)
    many, target, setup = _folder_to_write(tmp_path, vault, source)
    staging = Path(os.fsdecode(setup.staging))
    before = len(os.listdir("/proc/self/fd"))
    worker = restorebatch.TreeWorker(vault, setup, TempNames(setup.staging, setup.token, -1))
    node = worker.plan_dir(many, os.fsencode(target)).subdirs[1]
    worker.plan_dir(node, os.fsencode(target / os.fsdecode(node.name)))
    assert worker.idle().empty and len(worker.pending) == 10
    assert len(os.listdir("/proc/self/fd")) >= before + 30  # 30 files without a name, open
    worker.close()
    assert len(os.listdir("/proc/self/fd")) == before
    assert os.listdir(target / os.fsdecode(node.name)) == [] and os.listdir(staging) == []


def test_files_one_writer_planned_are_handed_to_another_and_written_there(
    tmp_path: Path, vault: Vault, source: Path
) -> None:
    """A writer gives away pending files worth at most the cost asked (the last planned, by
    size plus a per-file cost); another writer adopts them and puts them in place as if it
    had planned them."""
    many, target, setup = _folder_to_write(tmp_path, vault, source)
    names = TempNames(setup.staging, setup.token, -1)
    worker = restorebatch.TreeWorker(vault, setup, names)
    parent = restorebatch.TreeWorker(vault, setup, names)
    try:
        folders = worker.plan_dir(many, os.fsencode(target)).subdirs[1:4]  # no link members
        for node in folders:
            worker.plan_dir(node, os.fsencode(target / os.fsdecode(node.name)))
        assert worker.trees.kept == 0  # a folder planned once is not kept decoded
        planned = list(worker.pending)
        cost = [e.node.size + restorebatch.FILE_COST for e in planned]
        assert worker.cost == sum(cost) and worker.give(restorebatch.FILE_COST - 1) == []
        given = worker.give(worker.cost // 2)
        kept = len(worker.pending)
        assert 0 < len(given) < len(planned) and kept + len(given) == len(planned)
        assert [(f, n) for f, n, _, _ in given] == [(e.folder, e.name) for e in planned[kept:]]
        assert sum(cost[kept:]) <= sum(cost) // 2 < sum(cost[kept - 1 :])
        assert worker.cost == sum(cost[:kept])
        parent.adopt(given)
        assert parent.cost == sum(cost[kept:])
        done = worker.finish()
        done.add(parent.finish())
        assert done.placed == 120 and done.errors == []
    finally:
        worker.close()
        parent.close()
    for node in folders:
        written = sorted(os.listdir(target / os.fsdecode(node.name)))
        assert written == sorted(os.listdir(source / "many" / os.fsdecode(node.name)))
        for name in written:
            got = (target / os.fsdecode(node.name) / name).read_bytes()
            assert got == (source / "many" / os.fsdecode(node.name) / name).read_bytes()


def test_a_worker_holding_more_files_at_the_end_hands_some_back(
    tmp_path: Path, vault: Vault, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the end of a restore by subtrees a worker that holds more files to write than the
    parent hands back half the difference, which the parent writes: the restore is the same
    (here the worker is sent every folder at once and plans them all before writing)."""
    point = _backup(vault, source)
    monkeypatch.setattr(restoretree, "_DIRS_AHEAD", 64)
    by_threads = _restore(vault, point, tmp_path / "threads", 0)
    shared = _restore(vault, point, tmp_path / "shared", 1)
    assert shared.processes == 1 and shared.returned_files > 0
    assert shared.to_dict()["returned_files"] == shared.returned_files
    assert shared.errors == by_threads.errors == []
    for key in ("files", "dirs", "links", "others", "bytes_written"):
        assert getattr(shared, key) == getattr(by_threads, key), key
    assert_same(snapshot(tmp_path / "threads"), snapshot(tmp_path / "shared"))
    assert not _temporaries(tmp_path / "shared")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_out_of_files_is_handed_a_share_of_the_parents(
    tmp_path: Path, vault: Vault, source: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """When the parent plans every folder (here its worker never has room for one: a folder
    of 50,000 files planned before the worker was ready is the same), the worker says it is
    out of files and is handed shares of the parent's, made empty by the parent at their
    destinations: the restore is the same as with threads."""
    point = _backup(vault, source)
    monkeypatch.setattr(restoretree, "_DIRS_AHEAD", 0)
    by_threads = _restore(vault, point, tmp_path / "threads", 0)
    shared = _restore(vault, point, tmp_path / "shared", workers)
    assert shared.processes == workers and 0 < shared.shared_files < shared.files
    assert shared.to_dict()["shared_files"] == shared.shared_files
    assert shared.helped_dirs == by_threads.dirs + 1  # every folder, the top one too
    assert shared.errors == by_threads.errors == []
    for key in ("files", "dirs", "links", "others", "bytes_written"):
        assert getattr(shared, key) == getattr(by_threads, key), key
    assert_same(snapshot(tmp_path / "threads"), snapshot(tmp_path / "shared"))
    assert not _temporaries(tmp_path / "shared")


def test_files_given_in_a_staged_tree_are_made_by_the_giver_and_filled_by_the_taker(
    tmp_path: Path, vault: Vault, source: Path
) -> None:
    """In a staged tree a writer makes the files it gives away, empty, at their destinations
    (one process adds a folder's names: two at once were slower than one), at most ``most``
    of them; the taker opens and fills them.  One that is gone by then fails as its own
    file, and nothing is left in its place."""
    many, target, setup = _folder_to_write(tmp_path, vault, source)
    tree = os.fsencode(target)  # the whole target stands for the staged tree here
    names = TempNames(setup.staging, setup.token, -1, tree=tree)
    giver = restorebatch.TreeWorker(vault, setup, names)
    taker = restorebatch.TreeWorker(vault, setup, names)
    try:
        folders = giver.plan_dir(many, tree).subdirs[1:4]  # no link members
        for node in folders:
            giver.plan_dir(node, os.path.join(tree, node.name))
        assert len(giver.pending) == 120
        given = giver.give(giver.cost, most=50)
        assert len(given) == 50 and len(giver.pending) == 70
        for folder, name, _node, action in given:
            made = os.lstat(os.path.join(folder, name))
            assert action == "made" and made.st_size == 0 and stat.S_ISREG(made.st_mode)
        gone = os.path.join(given[0][0], given[0][1])
        os.unlink(gone)
        taker.adopt(given)
        back = taker.give(taker.cost, most=5)  # made already: handed on as they are
        assert [action for *_, action in back] == ["made"] * 5 and len(taker.pending) == 45
        giver.adopt(back)
        done = giver.finish()
        done.add(taker.finish())
        assert done.placed == 119 and [p for p, _ in done.errors] == [os.fsdecode(gone)]
    finally:
        giver.close()
        taker.close()
    assert not os.path.lexists(gone)
    for node in folders:
        for entry in (target / os.fsdecode(node.name)).iterdir():
            got = entry.read_bytes()
            assert got == (source / "many" / os.fsdecode(node.name) / entry.name).read_bytes()


def test_hard_link_groups_are_written_with_the_rest_and_linked_in_place(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore by subtrees writes each hard-link group's first member with the other files
    (shared with the workers, not after them by the parent alone) and links the others to it
    at their final names in the staged tree, the worker a slice of them too
    (``restoretail.py``): the same inodes as the source's groups."""
    src = tmp_path / "src"
    for d in range(6):
        (src / f"d{d}").mkdir(parents=True)
    for i in range(300):  # pairs across folders, and a few groups of three
        first = src / f"d{i % 6}" / f"f{i:03}"
        first.write_bytes(b"%d" % i * (1 + i % 50))
        os.link(first, src / f"d{(i + 1) % 6}" / f"l{i:03}")
        if i % 50 == 0:
            os.link(first, src / f"d{(i + 2) % 6}" / f"m{i:03}")
    point = _backup(vault, src)

    def no_second_pass(*args: object) -> None:
        raise AssertionError("the groups' first members were left for after the workers")

    by_threads = _restore(vault, point, tmp_path / "threads", 0)
    executor = importlib.import_module("strongroom.files.restore")._Executor
    monkeypatch.setattr(executor, "_contents", no_second_pass)
    sent: list[tuple[Any, ...]] = []
    send = WorkerProcess.send

    def noted(w: WorkerProcess, msg: tuple[Any, ...]) -> None:
        sent.append(msg)
        send(w, msg)

    monkeypatch.setattr(WorkerProcess, "send", noted)
    shared = _restore(vault, point, tmp_path / "shared", 1)
    assert shared.errors == by_threads.errors == [] and shared.links == by_threads.links == 306
    slices = [msg[1] for msg in sent if msg[0] == "link"]
    assert len(slices) == 1 and len(slices[0]) == 153  # half of them, the rest by the parent
    rel = src.relative_to("/")
    assert_same(snapshot(tmp_path / "threads" / rel), snapshot(tmp_path / "shared" / rel))
    for i in range(300):
        first = tmp_path / "shared" / rel / f"d{i % 6}" / f"f{i:03}"
        linked = tmp_path / "shared" / rel / f"d{(i + 1) % 6}" / f"l{i:03}"
        assert first.stat().st_ino == linked.stat().st_ino and first.stat().st_nlink in (2, 3)
    assert not _temporaries(tmp_path / "shared")


def test_a_worker_writes_a_jobs_worth_a_folder_it_plans_while_a_batch_is_due(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Folders come a few to a message; while a batch's worth of files waits, the worker
    writes a job's worth after each folder of the message, not one for the message (that had
    let 19,700 of 50,000 small files pile up in the worker, handed back at the end)."""
    monkeypatch.setattr(restorebatch, "BATCH_FILES", 100)
    src = tmp_path / "src"
    (src / "big").mkdir(parents=True)
    for i in range(300):
        (src / "big" / f"f{i:03}").write_bytes(b"%d" % i)
    for k in range(4):
        (src / f"e{k}").mkdir()
    point = _backup(vault, src)
    reader = TreeReader(vault)
    top = reader.lookup(root_node(vault.resolve_point(point)), str(src))
    assert top is not None
    kids = {n.name: n for n in reader.children(top)}
    target = tmp_path / "out"
    setup = _staged_setup(target)
    worker = restorebatch.TreeWorker(vault, setup, TempNames(setup.staging, setup.token, -1))
    ours, theirs = socket.socketpair()
    conn = Channel(ours.detach())
    try:
        worker.plan_dir(kids[b"big"], os.fsencode(target))
        assert worker.due and len(worker.pending) == 300
        folders = [(k, kids[b"e%d" % k], os.fsencode(target / f"e{k}")) for k in range(3)]
        restorework._answer(Channel(theirs.detach()), ("dirs", folders), worker)
        kind, results = conn.recv()
        assert kind == "dirs" and [tag for tag, _ in results] == [0, 1, 2]
        kinds = []
        while wait([conn], 0):
            kinds.append(conn.recv()[0])
        assert kinds == ["written"] * 3  # 300 -> 236 -> 172 -> 108 files pending, still due
        assert len(worker.pending) == 300 - 3 * restorebatch._IDLE_FILES
        done = worker.finish()
        assert done.errors == []
    finally:
        worker.close()
        conn.close()


def test_at_the_end_a_worker_hands_back_half_of_any_number_of_files(
    tmp_path: Path, vault: Vault
) -> None:
    """The flush's hand-back is not capped at a batch: a worker holding 2,400 files with
    the parent holding none gives back about half (a cap of 1,000 left a restore of 20,000
    files of 34 KB with its parent waiting 0.3 s of 2.4 for the worker)."""
    src = tmp_path / "src"
    (src / "big").mkdir(parents=True)
    for i in range(2400):
        (src / "big" / f"f{i:04}").write_bytes(b"%d" % i)
    point = _backup(vault, src)
    big = TreeReader(vault).lookup(root_node(vault.resolve_point(point)), str(src / "big"))
    assert big is not None
    target = tmp_path / "out"
    setup = _staged_setup(target)
    names = TempNames(setup.staging, setup.token, -1)
    worker = restorebatch.TreeWorker(vault, setup, names)
    parent = restorebatch.TreeWorker(vault, setup, names)
    ours, theirs = socket.socketpair()
    try:
        worker.plan_dir(big, os.fsencode(target))  # its files, into the target
        assert len(worker.pending) == 2400
        answer = threading.Thread(  # the worker's side: its messages outgrow the socket's buffer
            target=restorework._answer, args=(Channel(theirs.detach()), ("flush", 0), worker)
        )
        answer.start()
        conn = Channel(ours.detach())
        kind, items = conn.recv()
        assert kind == "spare" and 1100 <= len(items) <= 1300
        parent.adopt(items)
        done = parent.finish()
        kind, flushed = conn.recv()
        answer.join()
        assert kind == "flushed"
        done.add(flushed)
        assert done.placed == 2400 and done.errors == []
    finally:
        worker.close()
        parent.close()
    written = sorted(n for n in os.listdir(target) if not n.startswith(".strongroom-tmp"))
    assert written == sorted(os.listdir(src / "big"))
