"""The parent's side of a files backup's worker processes: start them, hand out directories,
collect listings, flush them at the end.

Why processes: a file costs the backup about a hundred microseconds of Python work (stat,
open, cache check, node, put) that holds the interpreter lock, so threads scale poorly past
one core on trees of small files (issue 19: 1.29x from one core to two).  Workers each list
whole directories and read their files (``procwork.py``); the parent keeps the tree
bookkeeping: it writes each directory's tree chunk once its listing and all its
subdirectories are back, stores files-cache rows, and commits.

Each worker is ``python -m strongroom.files.procwork`` on one end of a socket pair; messages
are pickles framed by :mod:`multiprocessing.connection`, and the first one carries the vault's
keys (:class:`~strongroom.vault.VaultHandoff`), so they never reach argv or the environment.
A worker that dies, or reports a failure, fails the backup: nothing is committed, and what it
wrote is unreferenced packs for prune, as after kill -9.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from strongroom.errors import FilesError, StrongroomError

if TYPE_CHECKING:
    from strongroom.files.backuptypes import BackupOptions
    from strongroom.files.nodes import Node
    from strongroom.vault import VaultHandoff

_QUEUED_PER_WORKER = 2  # one at work, one waiting: the rest wait here for whichever is free
_MAX_WORKERS = 8
_EXIT_WAIT = 60.0  # seconds for a flushed worker to exit
_ABANDON_WAIT = 2.0


@dataclass
class DirListing:
    """A folder as a worker did it: with its whole subtree (``tree_id``), or one level (every
    node in order, subfolder nodes without their subtree, and which of them to descend into);
    and the files cache's news: new rows (prepared: ``cache.prepare_rows``) and the folders
    whose rows are to be kept, with the names gone from them."""

    counts: dict[str, int]
    tree_id: bytes | None = None
    nodes: list[Node] = field(default_factory=list)
    subdirs: list[tuple[int, int]] = field(default_factory=list)  # (index in nodes, device)
    rows: list[object] = field(default_factory=list)
    touches: list[tuple[bytes, list[bytes]]] = field(default_factory=list)
    rejected: int = 0  # cache rows whose MAC failed
    errors: list[tuple[str, str]] = field(default_factory=list)
    inconsistent: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    nread: int = 0
    done_files: int = 0
    dir_error: str | None = None  # the directory could not be listed


@dataclass
class WrittenCounts:
    stored_new: int = 0
    raw_new: int = 0
    chunks_new: int = 0
    index_names: list[str] = field(default_factory=list)  # the index objects written


def worker_count(requested: int | None) -> int:
    """How many worker processes: ``requested``, or one per core this process may run on
    (none on one core, where they would only add their start-up)."""
    if requested is not None:
        return max(0, min(requested, _MAX_WORKERS))
    cores = len(os.sched_getaffinity(0))
    return 0 if cores < 2 else min(cores, _MAX_WORKERS)


class _Worker:
    def __init__(self, conn: Connection, proc: subprocess.Popen[bytes]) -> None:
        self.conn, self.proc = conn, proc
        self.ready = False
        self.inflight = 0


class DirWorkers:
    """Worker processes listing directories; tags are the parent's handles on its records."""

    def __init__(self, handoff: VaultHandoff, opts: BackupOptions, count: int) -> None:
        self.workers: list[_Worker] = []
        self.queue: deque[tuple[int, bytes, int, bool]] = deque()
        try:
            for _ in range(count):
                self.workers.append(_spawn(handoff, opts))
        except OSError as exc:
            self.close()
            raise FilesError(f"cannot start a backup worker process: {exc.strerror}") from None

    @property
    def ready(self) -> bool:
        return any(w.ready for w in self.workers)

    @property
    def busy(self) -> bool:
        return bool(self.queue) or any(w.inflight for w in self.workers)

    def submit(self, tag: int, path: bytes, dev: int, whole: bool) -> None:
        """List ``path`` (``dev``: the device for --one-file-system, or -1), with its whole
        subtree or one level."""
        self.queue.append((tag, path, dev, whole))
        self._dispatch()

    def _dispatch(self) -> None:
        while self.queue:
            idle = [w for w in self.workers if w.ready and w.inflight < _QUEUED_PER_WORKER]
            if not idle:
                return
            w = min(idle, key=lambda x: x.inflight)
            tag, path, dev, whole = self.queue.popleft()
            self._send(w, ("dir", tag, path, dev, whole))
            w.inflight += 1

    def poll(self, timeout: float | None) -> list[tuple[int, DirListing]]:
        """Listings that arrived within ``timeout`` (None: until at least one message)."""
        done: list[tuple[int, DirListing]] = []
        for conn in wait([w.conn for w in self.workers], timeout):
            w = next(x for x in self.workers if x.conn is conn)
            msg = self._recv(w)
            if msg[0] == "ready":
                w.ready = True
            elif msg[0] == "dir":
                w.inflight -= 1
                done.append((msg[1], msg[2]))
            else:
                raise _failure(msg)
        self._dispatch()
        return done

    def wait_ready(self, timeout: float) -> None:
        """Wait until every worker has opened the vault (at most ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while not all(w.ready for w in self.workers) and time.monotonic() < deadline:
            for tag_listing in self.poll(max(0.0, deadline - time.monotonic())):
                raise FilesError(f"a listing came before it was asked for: {tag_listing[0]}")

    def flush(self) -> WrittenCounts:
        """Every worker's packs and index objects written (before the parent's point)."""
        total = WrittenCounts()
        for w in self.workers:
            self._send(w, ("flush",))
        for w in self.workers:
            msg = self._recv(w)
            while msg[0] == "ready":
                msg = self._recv(w)
            if msg[0] != "flushed":
                raise _failure(msg)
            got: WrittenCounts = msg[1]
            total.stored_new += got.stored_new
            total.raw_new += got.raw_new
            total.chunks_new += got.chunks_new
            total.index_names += got.index_names
        return total

    def close(self, abandon: bool = False) -> None:
        """Stop every worker: after :meth:`flush` they exit at the end of their input; when
        the run is abandoned, SIGTERM (a worker deep in a big folder would not look at its
        input before it is done) gives them a moment to remove their temporary packs, and
        SIGKILL follows."""
        for w in self.workers:
            with contextlib.suppress(OSError):
                w.conn.close()
            if abandon and w.proc.poll() is None:
                w.proc.terminate()
        for w in self.workers:
            try:
                w.proc.wait(timeout=_ABANDON_WAIT if abandon else _EXIT_WAIT)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
        self.workers = []

    def _send(self, w: _Worker, msg: tuple[Any, ...]) -> None:
        try:
            w.conn.send(msg)
        except OSError:
            raise FilesError(_died(w)) from None

    def _recv(self, w: _Worker) -> tuple[Any, ...]:
        try:
            msg: tuple[Any, ...] = w.conn.recv()
        except (EOFError, OSError):
            raise FilesError(_died(w)) from None
        return msg


def _spawn(handoff: VaultHandoff, opts: BackupOptions) -> _Worker:
    parent, child = socket.socketpair()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "strongroom.files.procwork", str(child.fileno())],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
        )
    finally:
        child.close()
    conn = Connection(parent.detach())
    w = _Worker(conn, proc)
    try:
        conn.send(("open", handoff, opts))
    except OSError:
        proc.kill()
        proc.wait()
        conn.close()
        raise
    return w


def _died(w: _Worker) -> str:
    code = w.proc.poll()
    how = f"exit status {code}" if code is not None else "its pipe closed"
    return f"a backup worker process stopped ({how})"


def _failure(msg: tuple[Any, ...]) -> StrongroomError:
    if msg[0] == "failed":
        try:
            exc = pickle.loads(msg[1])
        except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError):
            return FilesError(f"a backup worker process failed: {msg[2]}")
        if isinstance(exc, StrongroomError):
            return exc
        return FilesError(f"a backup worker process failed: {msg[2]}")
    return FilesError(f"unexpected message from a backup worker process: {msg[0]!r}")
