"""Writing a restore's files in batches, in a worker process or in the parent that helps its
workers (a restore by subtrees, ``restoretree.py``): a batch is written, made durable and
renamed or linked into place (``contents.place``); a folder of a restore by subtrees is
planned where its files are written (:class:`TreeWorker`), its batches committed on a thread
of their own."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from operator import attrgetter

from strongroom.files.contents import job_workers, place
from strongroom.files.fetch import MADE, ContentWriter, make_empty
from strongroom.files.longpath import on_path
from strongroom.files.nodes import DIR, FILE, Node
from strongroom.files.placing import TempNames, descriptors_for, make_durable, make_special
from strongroom.files.plan import CREATE, Entry
from strongroom.files.restorejobs import NO_CHUNKS, FileTask, plan_jobs
from strongroom.files.restoreprocs import (
    BATCH_BYTES,
    BATCH_FILES,
    BatchResult,
    DirResult,
    FilesDone,
    Item,
    WorkerSetup,
)
from strongroom.files.tree import TreeReader
from strongroom.files.vaultview import RestoreVault
from strongroom.records import dataclass

_IDLE_FILES = 64  # files an idle writer writes before it looks for new work again
# What a file costs to write beyond its bytes (create, metadata, durable rename), in bytes'
# worth, when writers split files between them: a restore writes small files at 15-30 MB/s a
# core and big ones at hundreds.
FILE_COST = 64 << 10


def run_batch(tree: TreeWorker, items: list[Item]) -> BatchResult:
    """Write the files, make them durable, rename (or link) them into place."""
    entries = [Entry(folder, name, node, action) for folder, name, node, action in items]
    return write_batch(tree.vault, tree.setup, tree.names, entries, tree.unnamed)


def write_batch(
    vault: RestoreVault,
    setup: WorkerSetup,
    names: TempNames,
    entries: list[Entry],
    unnamed: bool = False,
) -> BatchResult:
    """Write the files, make them durable, rename them into place; the result names them
    by their index in ``entries``."""
    return commit_batch(write_files(vault, setup, names, entries, unnamed=unnamed))


@dataclass
class Written:
    """A batch whose files are written under temporary names, not yet durable or renamed;
    ``good`` are the files to rename (with their index in the caller's ``entries``)."""

    writer: ContentWriter
    setup: WorkerSetup
    result: BatchResult
    good: list[tuple[int, FileTask]]


def write_files(
    vault: RestoreVault,
    setup: WorkerSetup,
    names: TempNames,
    entries: list[Entry],
    between: Callable[[], None] | None = None,
    unnamed: bool = False,
) -> Written:
    """Write the files under temporary names (the first half of :func:`write_batch`);
    ``between`` runs on this thread after each job (see ``restoretree._TreeRun.feed``);
    ``unnamed``: files created without a name where the file system can, when nothing can be
    in the way of their destinations (``fetch.ContentWriter._create_unnamed``).  In a staged
    tree (``names.in_tree``) the files are made at their destinations instead."""
    at = {id(e): i for i, e in enumerate(entries)}  # before the sort: the caller's order
    place_of = vault.place_of
    for e in entries:
        e.place = place_of(e.node.chunks[0]) if e.node.chunks else NO_CHUNKS
    entries = sorted(entries, key=attrgetter("place"))  # the batch in the order of the packs
    writer = ContentWriter(
        vault,
        names,
        verify=setup.verify,
        as_root=setup.as_root,
        writeback=setup.durable,
        unnamed=unnamed,
    )
    written = Written(writer, setup, BatchResult(), [])
    result = written.result
    try:
        # only restores by several processes write here (restorework.py, restoretree.py)
        threads = job_workers(entries, vault.capabilities.read_workers, processes=True)
        for task in _write(writer, entries, threads, between):
            i = at[id(task.entry)]
            result.issues += [(i, reason) for reason in task.issues or ()]
            if task.failure is not None:
                result.failed.append((i, task.failure))
                continue
            result.wrote += 1
            result.written += task.written
            result.verified += task.verified
            written.good.append((i, task))
    except BaseException:
        writer.discard_all()
        raise
    return written


def commit_batch(written: Written) -> BatchResult:
    """Make a written batch durable and rename its files into place (the second half of
    :func:`write_batch`); on a failure its temporary files are removed."""
    return commit_batches([written])[0]


def commit_batches(batches: list[Written]) -> list[BatchResult]:
    """:func:`commit_batch` of several written batches with one ``syncfs``."""
    setup = batches[0].setup
    try:
        if setup.durable:
            make_durable(setup.target)
        return [_place(written) for written in batches]
    except BaseException:
        for written in batches:
            written.writer.discard_all()
        raise


def _place(written: Written) -> BatchResult:
    result = written.result
    tasks = [task for _, task in written.good]
    placed = place(written.writer, tasks, written.setup.durable)
    for (i, _task), (_, failure) in zip(written.good, placed, strict=True):
        if failure is not None:
            result.failed.append((i, failure))
    return result


def _write(
    writer: ContentWriter,
    entries: list[Entry],
    threads: int,
    between: Callable[[], None] | None,
) -> list[FileTask]:
    jobs = plan_jobs(entries, writer.task)
    done: list[FileTask] = []
    if threads <= 1:
        for job in jobs:
            done += writer.run(job)
            if between is not None:
                between()
        return done
    with ThreadPoolExecutor(threads, thread_name_prefix="files-restore") as pool:
        for tasks in pool.map(writer.run, jobs):
            done += tasks
            if between is not None:
                between()
    return done


class TreeWorker:
    """A worker's part of a restore by subtrees (``restoretree.py``): it plans the folders it
    is handed (creating their subfolders and special files) and writes their files in
    batches across folders."""

    def __init__(self, vault: RestoreVault, setup: WorkerSetup, names: TempNames) -> None:
        self.vault, self.setup, self.names = vault, setup, names
        self.trees = TreeReader(vault, cache=0)  # each folder is planned once
        self.pending: list[Entry] = []
        self.pending_bytes = 0
        self._pool: ThreadPoolExecutor | None = None
        # written, not yet handed to the committer: (the files, their batch)
        self._held: list[tuple[list[Entry], Written]] = []
        self._held_files = self._held_bytes = 0
        self._committing: tuple[list[list[Entry]], Future[list[BatchResult]]] | None = None
        # files made at their final names in the staged tree (staged.py), else created without
        # a name, each holding its descriptor until it is linked: two batches at most
        self.unnamed = not names.tree and descriptors_for(2 * BATCH_FILES)

    def plan_dir(self, node: Node, dest: bytes) -> DirResult:
        out = DirResult()
        for kid in self.trees.children(node):
            if kid.kind == FILE:  # (its path is not needed yet: 50,000 joins in a big folder)
                if kid.link is not None:
                    out.links.append(kid)  # the parent links the group's members together
                    continue
                self.pending.append(Entry(dest, kid.name, kid, CREATE))
                self.pending_bytes += kid.size
                continue
            kdest = os.path.join(dest, kid.name)
            if kid.kind == DIR:
                failure = _make_dir(kdest)
                if failure is None:
                    out.subdirs.append(kid)
                else:
                    out.errors.append((os.fsdecode(kdest), failure))
            else:
                self._special(kid, dest, kdest, out)
        return out

    @property
    def cost(self) -> int:
        """What the pending files will take to write, in bytes' worth (:data:`FILE_COST`)."""
        return self.pending_bytes + len(self.pending) * FILE_COST

    def give(self, cost: int, most: int = BATCH_FILES) -> list[Item]:
        """Pending files worth at most ``cost`` (the last planned), at most ``most`` of them,
        for another writer to :meth:`adopt`; in a staged tree each is made here first
        (``fetch.make_empty``: one process adds the names to a folder)."""
        cut = len(self.pending)
        low = max(0, cut - most)
        while cut > low:
            size = self.pending[cut - 1].node.size
            if size + FILE_COST > cost:
                break
            cost -= size + FILE_COST
            cut -= 1
        given: list[Item] = []
        kept: list[Entry] = []
        for e in self.pending[cut:]:
            if e.action == MADE or not self.names.in_tree(e.folder):  # (made already)
                given.append((e.folder, e.name, e.node, e.action))
            elif make_empty(self.names, e):
                given.append((e.folder, e.name, e.node, MADE))
            else:
                kept.append(e)  # written here, where a failure is reported as usual
        self.pending[cut:] = kept
        self.pending_bytes -= sum(item[2].size for item in given)
        return given

    def adopt(self, items: list[Item]) -> None:
        """Files another writer planned (:meth:`give`), written as if planned here."""
        for folder, name, node, action in items:
            self.pending.append(Entry(folder, name, node, action))
            self.pending_bytes += node.size

    def _special(self, node: Node, dest: bytes, kdest: bytes, out: DirResult) -> None:
        shown = os.fsdecode(kdest)
        failure = make_special(
            node,
            self.names(dest),
            kdest,
            as_root=self.setup.as_root,
            issue=lambda reason: out.errors.append((shown, reason)),
        )
        if failure is None:
            out.others += 1
        else:
            out.errors.append((shown, failure))

    @property
    def due(self) -> bool:
        return len(self.pending) >= BATCH_FILES or self.pending_bytes >= BATCH_BYTES

    def flush(self, between: Callable[[], None] | None = None) -> FilesDone:
        """Write every pending file (see :func:`write_files`); returns what became of the
        files the committer put in place meanwhile.

        Files written are held until a batch's worth (BATCH_FILES, BATCH_BYTES) is, then
        handed to the committer thread, which makes them durable with one ``syncfs`` and
        renames (or links) them into place while this thread writes on: waiting for the
        ``syncfs`` had been about a fifth of a restore of small files.  Files are counted
        once in place; at most two batches of files wait (each file without a name holds a
        descriptor), so a folder of more files than a batch is written in several."""
        return self._write_pending(len(self.pending), between)

    def idle(self) -> FilesDone:
        """Nothing else to do (no folder waiting): write a job's worth of the pending files
        now rather than once a batch is due.  On /usr the worker had spent 40 % of the
        restore waiting on its pipe with files pending while the parent wrote big files."""
        return self._write_pending(_IDLE_FILES, None)

    def finish(self) -> FilesDone:
        """Write what is pending and wait until every file is in place."""
        done = self._write_pending(len(self.pending), None)
        done.add(self._commit())
        done.add(self._join())
        return done

    def close(self) -> None:
        """Wait for a batch being committed (its temporary files are removed if it fails);
        files written and not yet handed over (a restore that failed) are removed, and the
        descriptors of those without a name closed."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        held, self._held = self._held, []
        self._held_files = self._held_bytes = 0
        for _, written in held:
            written.writer.discard_all()

    def _write_pending(self, count: int, between: Callable[[], None] | None) -> FilesDone:
        done = FilesDone()
        while count > 0 and self.pending:
            n = min(count, BATCH_FILES - self._held_files)
            entries = self.pending[:n]
            del self.pending[:n]
            size = sum(e.node.size for e in entries)
            self.pending_bytes -= size
            count -= n
            written = write_files(
                self.vault, self.setup, self.names, entries, between, self.unnamed
            )
            self._held.append((entries, written))
            self._held_files += n
            self._held_bytes += size
            if self._held_files >= BATCH_FILES or self._held_bytes >= BATCH_BYTES:
                done.add(self._commit())
        return done

    def _commit(self) -> FilesDone:
        """Hand the files held to the committer once the batch before is in place."""
        if not self._held:
            return FilesDone()
        held, self._held = self._held, []
        self._held_files = self._held_bytes = 0
        try:
            done = self._join()
        except BaseException:
            for _, written in held:
                written.writer.discard_all()
            raise
        batches = [written for _, written in held]
        self._committing = ([e for e, _ in held], self._committer().submit(commit_batches, batches))
        return done

    def _committer(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="files-commit")
        return self._pool

    def _join(self) -> FilesDone:
        done = FilesDone()
        if self._committing is None:
            return done
        (groups, future), self._committing = self._committing, None
        for entries, result in zip(groups, future.result(), strict=True):
            done.add(_files_done(entries, result))
        return done


def _files_done(entries: list[Entry], result: BatchResult) -> FilesDone:
    failed = {i for i, _ in result.failed}
    return FilesDone(
        placed=len(entries) - len(failed),
        wrote=result.wrote,
        written=result.written,
        verified=result.verified,
        last=entries[-1].dest,
        errors=[(os.fsdecode(entries[i].dest), r) for i, r in result.issues + result.failed],
        flagged=[
            (e.dest, e.node.flags)
            for i, e in enumerate(entries)
            if e.node.flags and i not in failed
        ],
    )


def _make_dir(path: bytes) -> str | None:
    try:
        on_path(os.mkdir, path, 0o700)
    except FileExistsError:
        if not on_path(os.path.isdir, path):
            return "cannot create directory: File exists"
    except OSError as exc:
        return f"cannot create directory: {exc.strerror}"
    return None


def own_staging(setup: WorkerSetup) -> bytes:
    """This worker's own staging folder, or the restore's when it cannot be made."""
    if setup.target_dev < 0 or not setup.own:
        return setup.staging
    try:
        os.mkdir(setup.own, 0o700)
    except OSError:
        return setup.staging
    return setup.own
