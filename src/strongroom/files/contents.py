"""The files of a restore written in this process: a pool of job threads (each running whole
jobs, :mod:`strongroom.files.fetch`) and one more thread that makes the finished files
durable and renames them into place, in batches.  Big trees of small files on local storage
go to worker processes instead (:mod:`strongroom.files.restoreprocs`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from strongroom import failpoints
from strongroom.files.fetch import ContentWriter
from strongroom.files.placing import (
    TempNames,
    descriptors_for,
    drop_cached,
    drop_cached_fd,
    link_into_place,
    make_durable,
    rename_into_place,
)
from strongroom.files.plan import Entry
from strongroom.files.restorejobs import FileTask, plan_jobs
from strongroom.files.vaultview import RestoreVault

COMMIT_FILES = 2000  # files made durable and renamed at once
COMMIT_BYTES = 512 << 20
# After a durable batch, files of this size and more leave the page cache (drop_cached); for
# smaller ones the open, fadvise and close cost more than the page or two they give back
DROP_FROM = 16 << 10
_SMALL_AVERAGE = 1 << 20  # bytes a file: below, one job thread on local storage
# Job threads for big files on local storage (whose read_workers is 2): each thread decodes a
# slice and then waits for its one direct write, so a third keeps the disk and the cores busy
# together.  512 MiB of text restored in 1.27 s instead of 1.52 (medians of 6, harness-style),
# on one core 1.62-1.79 s instead of 1.88-1.94; peak RSS the same (53 MiB: the key's
# derivation), PSS 45 MiB instead of 37; four threads 1.19 s but 60 MiB (docs/benchmarks.md,
# "Session 40").  Beside other processes of the same restore (worker processes, whose batches
# are the parallelism) two: a copy of /usr restored with 91.5 MiB summed peak memory instead of
# 85 (PSS 79 against 72.5) and in 3.96 s instead of 4.08 (CPU 5.51 s against 5.64; medians of 8
# alternated runs, "Session 42"): a third thread's window and chunks in each process, on cores
# the processes keep busy already.
_BIG_LOCAL_JOBS = 3
_BIG_LOCAL_JOBS_BESIDE_PROCESSES = 2


class ContentSink(Protocol):
    """What the restore records of its files (called on the caller's thread only)."""

    def failed(self, e: Entry, reason: str) -> None: ...

    def wrote(self, files: int, nbytes: int, verified: int, last: bytes) -> None: ...

    def placed(self, e: Entry) -> None: ...


def job_workers(files: Sequence[Entry], storage_workers: int, processes: bool = False) -> int:
    """How many threads run jobs: as many as the storage is worth (reads from object storage
    wait on the network), but on local storage (2) only one when the files are small on
    average.  Their per-file work holds the interpreter lock, and a second thread only trades
    it back and forth: restoring 50,000 files of under 4 KiB took 5.5-6.0 s with one and
    6.7-8.0 s (and 40 % more CPU) with two, 20,000 files of 1-64 KiB 4.4 s against 4.3-5.9 s
    (docs/benchmarks.md); big files get three (:data:`_BIG_LOCAL_JOBS`), which decompress
    and decrypt in parallel while another's write waits for the disk, or two in a restore
    that runs in several ``processes``.
    """
    if storage_workers > 2 or not files:
        return storage_workers
    if average_size(files) < _SMALL_AVERAGE:
        return 1
    if storage_workers != 2:
        return storage_workers
    return _BIG_LOCAL_JOBS_BESIDE_PROCESSES if processes else _BIG_LOCAL_JOBS


def average_size(files: Sequence[Entry]) -> float:
    return sum(e.node.size for e in files) / max(1, len(files))


def drain(files: list[Entry]) -> Iterator[Entry]:
    """The files in order, each dropped from the list as it is handed out."""
    files.reverse()
    while files:
        yield files.pop()


def commit(
    writer: ContentWriter, batch: list[FileTask], target: bytes, durable: bool
) -> list[tuple[FileTask, str | None]]:
    """Make a batch of written files durable (one ``syncfs``), then rename (or link) each
    into place; each file with the reason that failed, or None."""
    if durable and batch:
        make_durable(target)
    return place(writer, batch, durable)


def place(
    writer: ContentWriter, batch: list[FileTask], durable: bool
) -> list[tuple[FileTask, str | None]]:
    """Rename (or link) each file of a batch made durable into place (see :func:`commit`)."""
    if durable:
        for task in batch:  # clean now: their pages can go (placing.drop_cached)
            if task.entry.node.size >= DROP_FROM:
                if task.unnamed:
                    drop_cached_fd(task.fd)
                else:
                    drop_cached(task.tmp)
    renamed: list[tuple[FileTask, str | None]] = []
    for task in batch:
        failpoints.hit("restore-rename")
        if task.in_place:  # at its final name in the staged tree already
            renamed.append((task, None))
        elif task.unnamed:
            fd, task.fd = task.fd, -1
            renamed.append((task, link_into_place(fd, task.tmp, task.entry.dest)))
        else:
            renamed.append((task, rename_into_place(task.tmp, task.entry.dest)))
        writer.live.discard(task)
    return renamed


class ThreadedContents:
    """Writes files (in pack order) on job threads and commits them on one more."""

    def __init__(
        self,
        vault: RestoreVault,
        names: TempNames,
        target: bytes,
        *,
        verify: bool,
        as_root: bool,
        durable: bool,
    ) -> None:
        self.target, self.durable = target, durable
        # files made at their final names in a staged tree (staged.py), else created without
        # a name, each holding its descriptor until it is linked
        unnamed = not names.tree and descriptors_for(2 * COMMIT_FILES)
        self.writer = ContentWriter(
            vault, names, verify=verify, as_root=as_root, writeback=durable, unnamed=unnamed
        )
        self.pending: list[FileTask] = []
        self.pending_bytes = 0
        self.committing: Future[list[tuple[FileTask, str | None]]] | None = None
        self.committer = ThreadPoolExecutor(1, thread_name_prefix="files-commit")

    def run(self, files: list[Entry], workers: int, sink: ContentSink) -> None:
        """Jobs in pack order on a pool (a few per worker queued ahead, so memory stays
        bounded); ``files`` is emptied as jobs are made."""
        pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="files-restore")
        ahead: deque[Future[list[FileTask]]] = deque()
        try:
            for job in plan_jobs(drain(files), self.writer.task):
                ahead.append(pool.submit(self.writer.run, job))
                if len(ahead) > 2 * workers:
                    self._finished(ahead.popleft().result(), sink)
            while ahead:
                self._finished(ahead.popleft().result(), sink)
            self._commit(sink)
            self._join_commit(sink)
        except BaseException:
            # Stop every job and the commit before removing what they left: a descriptor is
            # closed only once no thread can write to it any more.
            pool.shutdown(wait=True, cancel_futures=True)
            self.committer.shutdown(wait=True)
            self.writer.discard_all()
            raise
        finally:
            pool.shutdown()
            self.committer.shutdown()

    def _finished(self, tasks: list[FileTask], sink: ContentSink) -> None:
        """Record the files a job finished; queue the good ones for the next commit."""
        for task in tasks:
            e = task.entry
            for reason in task.issues or ():
                sink.failed(e, reason)
            if task.failure is not None:
                sink.failed(e, task.failure)
                continue
            sink.wrote(1, task.written, int(task.verified), e.dest)
            self.pending.append(task)
            self.pending_bytes += e.node.size
            if len(self.pending) >= COMMIT_FILES or self.pending_bytes >= COMMIT_BYTES:
                self._commit(sink)

    def _commit(self, sink: ContentSink) -> None:
        """Hand the pending files to the committer once the previous batch is in place (so
        at most two batches of temporary files wait at any time)."""
        if not self.pending:
            return
        batch, self.pending, self.pending_bytes = self.pending, [], 0
        self._join_commit(sink)
        self.committing = self.committer.submit(self._commit_batch, batch)

    def _commit_batch(self, batch: list[FileTask]) -> list[tuple[FileTask, str | None]]:
        """On the committer thread: see :func:`commit`."""
        return commit(self.writer, batch, self.target, self.durable)

    def _join_commit(self, sink: ContentSink) -> None:
        """Wait for the batch being committed and record how it went."""
        if self.committing is None:
            return
        committing, self.committing = self.committing, None
        for task, failure in committing.result():
            if failure is not None:
                sink.failed(task.entry, failure)
            else:
                sink.placed(task.entry)
