"""The parent's side of a files backup's worker processes: start them, hand out directories,
collect listings, flush them at the end.

Why processes: a file costs the backup about a hundred microseconds of Python work (stat,
open, cache check, node, put) that holds the interpreter lock, so threads scale poorly past
one core on trees of small files (issue 19: 1.29x from one core to two).  Workers each list
whole directories and read their files (``procwork.py``); the parent keeps the tree
bookkeeping: it writes each directory's tree chunk once its listing and all its
subdirectories are back, stores files-cache rows, and commits.

Each worker runs ``strongroom.files.procwork`` as ``python -m`` would, started with the cycle
collector off (:mod:`strongroom.files.workerproc`: the boot, the pipe, the handed-over keys,
failures).
A worker that dies, or reports a failure, fails the backup: nothing is committed, and what it
wrote is unreferenced packs for prune, as after kill -9.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from strongroom.errors import FilesError
from strongroom.files.backuptypes import DirListing, WrittenCounts
from strongroom.files.workerproc import WorkerPool, WorkerProcess

if TYPE_CHECKING:
    from strongroom.files.backuptypes import BackupOptions
    from strongroom.files.remoteread import ReadAnswer, ReadRequest
    from strongroom.vault import ChunkClaims, VaultHandoff

MODULE = "strongroom.files.procwork"  # what a backup worker runs
_QUEUED_PER_WORKER = 2  # one at work, one waiting: the rest wait here for whichever is free


class DirWorkers(WorkerPool):
    """Worker processes listing directories; tags are the parent's handles on its records."""

    queued = _QUEUED_PER_WORKER

    def __init__(
        self,
        handoff: VaultHandoff,
        opts: BackupOptions,
        count: int,
        started: Iterable[WorkerProcess] = (),
        claims: ChunkClaims | None = None,
        lookups: bool = True,
    ) -> None:
        """``claims``: the parent's writer's table, passed to each worker (its descriptor
        right after the first message) so that only one process stores a chunk;
        ``lookups``: whether the files cache had rows to look up when the backup began."""
        first = ("open", handoff, opts, claims is not None, lookups)
        super().__init__(MODULE, [first] * count, "backup", started=started)
        if claims is not None:
            try:
                for w in self.workers:
                    w.send_fd(claims.fd)
            except FilesError:
                self.close(abandon=True)
                raise

    def list_dir(self, tag: int, path: bytes, dev: int, whole: bool) -> None:
        """List ``path`` (``dev``: the device for --one-file-system, or -1), with its whole
        subtree or one level."""
        self.submit(("dir", tag, path, dev, whole))

    def read_files(self, tag: int, wanted: list[ReadRequest]) -> None:
        """Read these files for the parent, into the worker's packs."""
        self.submit(("read", tag, wanted))

    def poll(self, timeout: float | None) -> list[tuple[int, DirListing | list[ReadAnswer]]]:
        """Listings and files read that arrived within ``timeout`` (None: until at least one
        message)."""
        done: list[tuple[int, DirListing | list[ReadAnswer]]] = []
        for msg in self.answers(timeout):
            if msg[0] not in ("dir", "read"):
                raise FilesError(f"unexpected answer from a backup worker process: {msg[0]!r}")
            done.append((msg[1], msg[2]))
        return done

    def wait_ready(self, timeout: float) -> None:
        """Wait until every worker has opened the vault (at most ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while not all(w.ready for w in self.workers) and time.monotonic() < deadline:
            for tag_listing in self.poll(max(0.0, deadline - time.monotonic())):
                raise FilesError(f"a listing came before it was asked for: {tag_listing[0]}")

    def start_flush(self) -> None:
        """Ask every worker to write its packs and index objects (before the parent's point:
        :meth:`finish_flush` waits for them)."""
        for w in self.workers:
            w.send(("flush",))

    def finish_flush(self) -> WrittenCounts:
        """Wait for :meth:`start_flush`'s answers: what the workers wrote.  Their input ends
        here: they exit while the parent saves the point (:meth:`close` waits for them)."""
        total = WrittenCounts()
        for w in self.workers:
            msg = w.next_reply()
            if msg[0] != "flushed":
                raise w.failure(msg)
            got: WrittenCounts = msg[1]
            total.stored_new += got.stored_new
            total.raw_new += got.raw_new
            total.chunks_new += got.chunks_new
            total.index_names += got.index_names
            total.borrowed += got.borrowed
        self.end_input()
        return total
