"""Writing a restore's files in batches, in a worker process or in the parent that helps its
workers (a restore by subtrees, ``restoretree.py``): a batch is written, made durable and
renamed into place (``contents.commit``); a folder of a restore by subtrees is planned where
its files are written (:class:`TreeWorker`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from operator import attrgetter

from strongroom.files.contents import commit, job_workers
from strongroom.files.fetch import NO_CHUNKS, ContentWriter, FileTask, plan_jobs
from strongroom.files.longpath import on_path
from strongroom.files.nodes import DIR, FILE, Node
from strongroom.files.placing import TempNames, make_special
from strongroom.files.plan import CREATE, Entry
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


def run_batch(
    vault: RestoreVault, setup: WorkerSetup, names: TempNames, items: list[Item]
) -> BatchResult:
    """Write the files, make them durable, rename them into place."""
    entries = [Entry(folder, name, node, action) for folder, name, node, action in items]
    return write_batch(vault, setup, names, entries)


def write_batch(
    vault: RestoreVault,
    setup: WorkerSetup,
    names: TempNames,
    entries: list[Entry],
    between: Callable[[], None] | None = None,
) -> BatchResult:
    """Write the files, make them durable, rename them into place; the result names them
    by their index in ``entries``.  ``between`` runs on this thread after each job (see
    ``restoretree._TreeRun.feed``)."""
    at = {id(e): i for i, e in enumerate(entries)}  # before the sort: the caller's order
    place_of = vault.place_of
    for e in entries:
        e.place = place_of(e.node.chunks[0]) if e.node.chunks else NO_CHUNKS
    entries = sorted(entries, key=attrgetter("place"))  # the batch in the order of the packs
    writer = ContentWriter(
        vault, names, verify=setup.verify, as_root=setup.as_root, writeback=setup.durable
    )
    result = BatchResult()
    try:
        threads = job_workers(entries, vault.capabilities.read_workers)
        done = _write(writer, entries, threads, between)
        good: list[tuple[int, FileTask]] = []
        for task in done:
            i = at[id(task.entry)]
            result.issues += [(i, reason) for reason in task.issues or ()]
            if task.failure is not None:
                result.failed.append((i, task.failure))
                continue
            result.wrote += 1
            result.written += task.written
            result.verified += task.verified
            good.append((i, task))
        renamed = commit(writer, [task for _, task in good], setup.target, setup.durable)
        for (i, _task), (_, failure) in zip(good, renamed, strict=True):
            if failure is not None:
                result.failed.append((i, failure))
    except BaseException:
        writer.discard_all()
        raise
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
    from concurrent.futures import ThreadPoolExecutor

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
        self.trees = TreeReader(vault)
        self.pending: list[Entry] = []
        self.pending_bytes = 0

    def plan_dir(self, node: Node, dest: bytes) -> DirResult:
        out = DirResult()
        for kid in self.trees.children(node):
            kdest = os.path.join(dest, kid.name)
            if kid.kind == DIR:
                failure = _make_dir(kdest)
                if failure is None:
                    out.subdirs.append(kid)
                else:
                    out.errors.append((os.fsdecode(kdest), failure))
            elif kid.kind == FILE:
                if kid.link is not None:
                    out.links.append(kid)  # the parent links the group's members together
                    continue
                self.pending.append(Entry(dest, kid.name, kid, CREATE))
                self.pending_bytes += kid.size
            else:
                self._special(kid, dest, kdest, out)
        return out

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
        """Write the pending files (see :func:`write_batch`)."""
        entries, self.pending, self.pending_bytes = self.pending, [], 0
        done = FilesDone()
        if not entries:
            return done
        result = write_batch(self.vault, self.setup, self.names, entries, between)
        failed = {i for i, _ in result.failed}
        done.errors = [(os.fsdecode(entries[i].dest), r) for i, r in result.issues + result.failed]
        done.placed = len(entries) - len(failed)
        done.wrote, done.written, done.verified = result.wrote, result.written, result.verified
        done.last = entries[-1].dest
        done.flagged = [
            (e.dest, e.node.flags)
            for i, e in enumerate(entries)
            if e.node.flags and i not in failed
        ]
        return done


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
