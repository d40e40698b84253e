"""The parent's side of a restore's worker processes: big trees of small files written by
several processes instead of threads.

Why: each file costs the restore tens of microseconds of Python work (its task, the chunk's
decryption, the creation, metadata and rename calls) that holds the interpreter lock, so
threads do not scale: a 50,000-file restore took longer on two cores than on one
(docs/benchmarks.md).  The parent still plans, creates the folders and special files, makes
the hard links and applies the folders' metadata; the files themselves, in the order of the
packs that hold them, go out in batches to ``python -m strongroom.files.restorework``
workers (:mod:`strongroom.files.workerproc`: the pipe, the handed-over keys, failures).  A
worker writes a batch under temporary names, makes it durable and renames it into place,
exactly as the threads do, and answers with what failed.  A worker that dies or fails stops
the restore; the files it had not renamed are removed with the staging folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import field, replace
from typing import TYPE_CHECKING

from strongroom.errors import FilesError
from strongroom.files.contents import COMMIT_BYTES, COMMIT_FILES, ContentSink, drain
from strongroom.files.nodes import Node
from strongroom.files.plan import Entry
from strongroom.records import dataclass

if TYPE_CHECKING:
    from strongroom.files.workerproc import WorkerPool
    from strongroom.vault import VaultHandoff

# A batch is what a worker makes durable at once: the threads' commit batch, so that the
# number of syncfs calls stays the same.
BATCH_FILES = COMMIT_FILES // 2
BATCH_BYTES = COMMIT_BYTES // 8
_NAMES_APART = 10**12  # each worker's temporary names count from its own multiple of this

# One file to write: its folder, name, node and planned action.
Item = tuple[bytes, bytes, Node, str]


@dataclass(frozen=True)
class WorkerSetup:
    target: bytes
    staging: bytes
    token: bytes
    target_dev: int
    verify: bool
    as_root: bool
    durable: bool
    first_name: int = 1
    own: bytes = b""  # the worker's folder in the staging folder (made by the worker)
    tree: bytes = b""  # where the restore builds the point (staged.py), if it does
    writer: int = 0  # 0 the parent, 1, 2, ... the workers (own_setup)
    shares: bool = False  # a restore by subtrees: say when out of files (``hungry``)


@dataclass
class BatchResult:
    """What became of a batch: files not restored and metadata not applied (by index in the
    batch, with the reason), and the data written."""

    failed: list[tuple[int, str]] = field(default_factory=list)
    issues: list[tuple[int, str]] = field(default_factory=list)
    wrote: int = 0  # files whose data was written
    written: int = 0  # bytes
    verified: int = 0


@dataclass
class DirResult:
    """A folder a worker planned (a restore by subtrees, ``restoretree.py``): its subfolders
    (created, to be handed out next), the members of hard-link groups (for the parent), the
    special files it made and what failed (destination, reason)."""

    subdirs: list[Node] = field(default_factory=list)
    links: list[Node] = field(default_factory=list)
    others: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class FilesDone:
    """Files a worker of a restore by subtrees put in place (or failed to)."""

    placed: int = 0
    wrote: int = 0
    written: int = 0
    verified: int = 0
    last: bytes = b""
    errors: list[tuple[str, str]] = field(default_factory=list)
    flagged: list[tuple[bytes, int]] = field(default_factory=list)  # (dest, inode flags)

    @property
    def empty(self) -> bool:
        return not (self.placed or self.wrote or self.errors)

    def add(self, other: FilesDone) -> None:
        """Count ``other`` (a later batch) in this one."""
        self.placed += other.placed
        self.wrote += other.wrote
        self.written += other.written
        self.verified += other.verified
        self.last = other.last or self.last
        self.errors += other.errors
        self.flagged += other.flagged


class ProcessContents:
    """Worker processes writing the files of one restore: started early (they open the
    vault and load its index while the parent plans), told where to write by :meth:`run`."""

    def __init__(self, handoff: VaultHandoff, count: int) -> None:
        # here: the workers import this module for its message types, and need none of the
        # pool's machinery (subprocess)
        from strongroom.files.workerproc import WorkerPool

        firsts = [("open", handoff)] * count
        self.pool: WorkerPool = WorkerPool(
            "strongroom.files.restorework", firsts, "restore", ("written", "hungry")
        )
        self.pending: dict[int, list[Entry]] = {}

    def run(self, files: list[Entry], setup: WorkerSetup, sink: ContentSink) -> None:
        """Write ``files`` (in pack order; the list is emptied as batches go out)."""
        pool = self.pool
        try:
            self.send_setup(setup)
            for tag, batch in enumerate(_batches(drain(files))):
                self.pending[tag] = batch
                pool.submit(("files", tag, [(e.folder, e.name, e.node, e.action) for e in batch]))
                while len(pool.queue) > len(pool.workers):  # the rest wait in ``files``
                    self._collect(pool.answers(None), sink)
            while pool.busy:
                self._collect(pool.answers(None), sink)
        except BaseException:
            pool.close(abandon=True)
            raise
        pool.close()

    def send_setup(self, setup: WorkerSetup) -> None:
        """Each worker's own names, and its own folder in the staging folder: one folder that
        two processes create files in at once cost the kernel twice the time per file (0.45
        against 0.22 s of system time for 10,000 files each, ext4)."""
        for k, w in enumerate(self.pool.workers):
            w.send(("setup", own_setup(setup, k + 1)))

    def close(self) -> None:
        """Stop the workers without using them (the restore failed before its files)."""
        self.pool.close(abandon=True)

    def _collect(self, answers: list[tuple[object, ...]], sink: ContentSink) -> None:
        for msg in answers:
            if msg[0] != "files" or not isinstance(msg[2], BatchResult):
                raise FilesError(f"unexpected answer from a restore worker process: {msg[0]!r}")
            tag, result = msg[1], msg[2]
            batch = self.pending.pop(tag)  # type: ignore[call-overload]
            for i, issue in result.issues:
                sink.failed(batch[i], issue)
            failed = dict(result.failed)
            if result.wrote:
                sink.wrote(result.wrote, result.written, result.verified, batch[-1].dest)
            for i, e in enumerate(batch):
                reason = failed.get(i)
                if reason is None:
                    sink.placed(e)
                else:
                    sink.failed(e, reason)


def own_setup(setup: WorkerSetup, k: int) -> WorkerSetup:
    """Writer ``k``'s names and folder in the staging folder: 1, 2, ... the workers, 0 the
    parent when it writes too (``restoretree.py``)."""
    own = os.path.join(setup.staging, b"w%d" % k)  # never a counter name
    return replace(setup, first_name=(k + 1) * _NAMES_APART, own=own, writer=k)


def _batches(files: Iterator[Entry]) -> Iterator[list[Entry]]:
    batch: list[Entry] = []
    size = 0
    for e in files:
        batch.append(e)
        size += e.node.size
        if len(batch) >= BATCH_FILES or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
