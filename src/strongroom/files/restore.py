"""File-level restore: plan, create directories, write files, link, then directory metadata.

Every file is written under a temporary name (in one staging folder per restore,
``.strongroom-tmp-staging-*`` at the target's root, so that its destination folder only ever
gets its final entry; beside it when that folder is on another file system), gets its xattrs,
ACLs, owner, mode and times on the open descriptor, and is renamed into place only after its
data is durable (``syncfs`` on the target, once per batch of files rather than one ``fsync``
per file): nothing half-written ever carries a final name.  Files are written
in the order of the packs that hold them by a pool of workers, each running a whole job (a run
of files, or a slice of a big file: read, decrypt, write, metadata; see
:mod:`strongroom.files.fetch`) while one more thread makes the finished batches durable and
renames them; sparse files get their holes back.  Hard links are made after the files they
point to; directory metadata is applied last, children before parents; inode flags (``chattr``)
after all of that, files first, then directories children first, since immutable and
append-only would forbid the renames, links and metadata before them.

A restore killed before its renames leaves temporary files behind; the next restore into the
same target removes them (only names exactly as a restore makes them, in the folders it
writes into) while it holds an exclusive ``flock`` on the target folder, so they are never
those of another restore still running.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

from strongroom import failpoints
from strongroom.files.fetch import (
    NO_CHUNKS,
    ContentWriter,
    FileTask,
    plan_jobs,
)
from strongroom.files.longpath import on_path, on_paths
from strongroom.files.metadata import (
    FL_LOCKING,
    apply_metadata,
    flags_unsupported,
    ifmt_of,
    read_flags_at,
    set_flags,
)
from strongroom.files.nodes import DIR, FIFO, FILE, SYMLINK, TEMP_PREFIX, Node
from strongroom.files.plan import (
    CREATE,
    KEEP_BOTH,
    MERGE,
    REPLACE,
    SKIP_META,
    Entry,
    Plan,
    Planner,
)
from strongroom.files.target import (
    check_space,
    has_entries,
    prepare_target,
    remove_stale_temps,
    staging_folder,
    target_lock,
)
from strongroom.files.tree import TreeReader, root_node
from strongroom.files.vaultview import RestoreVault
from strongroom.vault import RecoveryPoint

_COMMIT_FILES = 2000
_COMMIT_BYTES = 512 << 20

Progress = Callable[[int, int, str], None]


@dataclass
class RestoreOptions:
    target: str | Path
    selectors: Sequence[str] = ()
    on_conflict: str = "overwrite"
    dry_run: bool = False
    verify: bool = False
    workers: int | None = None  # default: job_workers(), by the storage and the file sizes
    durable: bool = True


@dataclass
class RestoreSummary:
    point_id: str = ""
    target: str = ""
    files: int = 0
    dirs: int = 0
    links: int = 0
    others: int = 0
    bytes_written: int = 0
    verified: int = 0
    skipped: list[str] = field(default_factory=list)
    kept_both: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    actions: list[tuple[str, str]] = field(default_factory=list)
    # Not failures of the restore: metadata the target cannot take (inode flags)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    duration: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.point_id,
            "target": self.target,
            "files": self.files,
            "dirs": self.dirs,
            "links": self.links,
            "others": self.others,
            "bytes_written": self.bytes_written,
            "verified": self.verified,
            "skipped": self.skipped,
            "kept_both": self.kept_both,
            "errors": [{"path": p, "reason": r} for p, r in self.errors],
            "actions": [{"action": a, "path": p} for a, p in self.actions],
            "warnings": [{"path": p, "reason": r} for p, r in self.warnings],
            "duration": round(self.duration, 3),
        }


def _show(path: bytes) -> str:
    return os.fsdecode(path)


def _syncfs(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "syncfs", None)
    if fn is None or fn(fd) != 0:
        os.sync()


class _Executor:
    def __init__(
        self, vault: RestoreVault, opts: RestoreOptions, target: bytes, summary: RestoreSummary
    ) -> None:
        self.vault, self.opts, self.target, self.summary = vault, opts, target, summary
        self.token = secrets.token_hex(4).encode()
        self.counter = itertools.count(1)  # next() is atomic: workers name files too
        self.as_root = os.geteuid() == 0
        self.pending: list[FileTask] = []
        self.pending_bytes = 0
        self.committing: Future[list[tuple[FileTask, str | None]]] | None = None
        # The files hard links point to, and those of them in place (only those: a set of
        # every file restored would cost memory for each).
        self.link_targets: set[bytes] = set()
        self.done: set[bytes] = set()
        self.dirs: list[Entry] = []
        self.flagged: list[tuple[bytes, int]] = []  # files in place whose inode flags wait
        self.unlocked: dict[bytes, int] = {}  # existing folders whose locking flags were cleared
        self.progress: Progress | None = None
        self.written = 0
        self.staging = os.path.join(target, TEMP_PREFIX + b"staging-" + self.token)
        self.target_dev = -1  # the staging folder's file system (-1: there is none)
        self.staged: dict[bytes, bool] = {}  # folder -> whether its temporaries are staged

    def _tmp(self, folder: bytes) -> bytes:
        """A fresh temporary name for an entry of ``folder`` (absolute): in the staging
        folder, or in ``folder`` itself when that is on another file system (a mount point
        below the target: a rename cannot cross it)."""
        n = str(next(self.counter)).encode()
        staged = self.staged.get(folder)
        if staged is None:
            staged = self.staged[folder] = self._on_target_fs(folder)
        if staged:
            return os.path.join(self.staging, n)
        return os.path.join(folder, TEMP_PREFIX + self.token + b"-" + n)

    def _on_target_fs(self, folder: bytes) -> bool:
        if self.target_dev < 0:
            return False
        try:
            return bool(on_path(os.lstat, folder).st_dev == self.target_dev)
        except OSError:
            return False  # creating the entry reports it

    def _fail(self, e: Entry, reason: str) -> None:
        self.summary.errors.append((_show(e.dest), reason))

    def _issue(self, e: Entry) -> Callable[[str], None]:
        return lambda reason: self._fail(e, reason)

    def run(self, plan: Plan) -> None:
        """Carry out the plan, taking its entries: each file's entry (and node) is let go
        once the file is in place, so the memory the plan holds shrinks as files are done."""
        files: list[Entry] = []
        links: list[Entry] = []
        entries, plan.entries = plan.entries, []
        for e in entries:
            kind = e.node.kind
            if kind == DIR:
                self._dir(e)
            elif kind == FILE:
                (links if e.link_to is not None else files).append(e)
            else:
                self._special(e)
        del entries
        self.link_targets = {e.link_to for e in links if e.link_to is not None}
        self._contents(files)
        for e in links:
            self._link(e)
        for e in reversed(self.dirs):
            try:
                on_path(apply_metadata, e.dest, e.node, as_root=self.as_root, issue=self._issue(e))
            except OSError as exc:  # a long path's folder could not be opened
                self._fail(e, f"cannot apply metadata: {exc.strerror}")
        self._set_flags()

    def _set_flags(self) -> None:
        """Inode flags, last of all: files, then directories children first (an immutable
        or append-only entry takes no rename, link, metadata or new entry after them)."""
        dirs = []
        for e in reversed(self.dirs):
            if self.unlocked.pop(e.dest, None) is not None or e.node.flags:
                dirs.append((e.dest, e.node.flags))
        kept = sorted(self.unlocked.items(), reverse=True)  # not overwritten: their own flags
        for dest, flags in [*self.flagged, *dirs, *kept]:
            try:
                on_path(set_flags, dest, flags)
            except OSError as exc:
                if exc.errno == errno.EPERM or flags_unsupported(exc):
                    reason = f"inode flags {flags:#x} not set: {exc.strerror}"
                    self.summary.warnings.append((_show(dest), reason))
                else:
                    self.summary.errors.append((_show(dest), f"cannot set inode flags: {exc}"))

    # --- directories, special files and links ----------------------------------------------

    def _dir(self, e: Entry) -> None:
        existed = e.action in (MERGE, SKIP_META)
        try:
            if e.action == REPLACE:
                on_path(os.unlink, e.dest)
            if e.action in (CREATE, REPLACE, KEEP_BOTH):
                try:
                    on_path(os.mkdir, e.dest, 0o700)
                except FileExistsError:
                    if not on_path(os.path.isdir, e.dest):
                        raise
                    existed = True
        except OSError as exc:
            self._fail(e, f"cannot create directory: {exc.strerror}")
            return
        if existed:  # a killed restore may have left temporary files in it
            self._unlock_dir(e)
            remove_stale_temps(e.dest, self.summary.errors)
        self.summary.dirs += 1
        if e.action != SKIP_META:
            self.dirs.append(e)

    def _unlock_dir(self, e: Entry) -> None:
        """An existing immutable or append-only folder takes no new entries: as root, clear
        those flags while restoring into it (set again at the end, to the point's flags when
        its metadata is applied, else to its own)."""
        if not self.as_root:
            return
        try:
            flags = on_path(read_flags_at, e.dest)
            if flags & FL_LOCKING:
                on_path(set_flags, e.dest, flags & ~FL_LOCKING)
                self.unlocked[e.dest] = flags
        except OSError:
            return  # creating its entries reports what is wrong

    def _special(self, e: Entry) -> None:
        node = e.node
        tmp = self._tmp(e.folder)
        try:
            if node.kind == SYMLINK:
                on_path(lambda p: os.symlink(node.target or b"", p), tmp)
            elif node.kind == FIFO:
                on_path(os.mkfifo, tmp, 0o600)
            else:
                on_path(os.mknod, tmp, 0o600 | ifmt_of(node.kind), node.rdev)
            on_path(apply_metadata, tmp, node, as_root=self.as_root, issue=self._issue(e))
        except OSError as exc:
            self._fail(e, f"cannot create {node.kind}: {exc.strerror}")
            return
        failure = _rename_into_place(tmp, e.dest)
        if failure is not None:
            self._fail(e, failure)
        else:
            self.summary.others += 1

    def _link(self, e: Entry) -> None:
        assert e.link_to is not None
        if e.link_to not in self.done:
            self._fail(e, f"hard link target {_show(e.link_to)} was not restored")
            return
        tmp = self._tmp(e.folder)
        try:
            on_paths(os.link, e.link_to, tmp)
            on_paths(os.rename, tmp, e.dest)
        except OSError as exc:
            self._fail(e, f"cannot create hard link: {exc.strerror}")
            with contextlib.suppress(OSError):
                on_path(os.unlink, tmp)
            return
        self.summary.links += 1

    # --- file contents ---------------------------------------------------------------------

    def _sort(self, files: list[Entry]) -> None:
        """Put the files in the order of the packs that hold their first chunk (files without
        chunks first, unknown chunks last); each entry's ``place`` says where that chunk is."""
        place_of = self.vault.place_of
        for e in files:
            e.place = place_of(e.node.chunks[0]) if e.node.chunks else NO_CHUNKS
        files.sort(key=attrgetter("place"))

    def _contents(self, files: list[Entry]) -> None:
        """Jobs in pack order on a pool (a few per worker queued ahead, so memory stays
        bounded); meanwhile one more thread commits (makes durable, renames) the finished
        files in batches.  ``files`` is emptied as jobs are made."""
        self._sort(files)
        writer = ContentWriter(self.vault, self._tmp, verify=self.opts.verify, as_root=self.as_root)
        workers = self.opts.workers or job_workers(files, self.vault.capabilities.read_workers)
        pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="files-restore")
        committer = ThreadPoolExecutor(1, thread_name_prefix="files-commit")
        ahead: deque[Future[list[FileTask]]] = deque()
        try:
            for job in plan_jobs(_drain(files), writer.task):
                ahead.append(pool.submit(writer.run, job))
                if len(ahead) > 2 * workers:
                    self._finished(ahead.popleft().result(), writer, committer)
            while ahead:
                self._finished(ahead.popleft().result(), writer, committer)
            self._commit(writer, committer)
            self._join_commit()
        except BaseException:
            # Stop every job and the commit before removing what they left: a descriptor is
            # closed only once no thread can write to it any more.
            pool.shutdown(wait=True, cancel_futures=True)
            committer.shutdown(wait=True)
            writer.discard_all()
            raise
        finally:
            pool.shutdown()
            committer.shutdown()

    def _finished(
        self, tasks: list[FileTask], writer: ContentWriter, committer: ThreadPoolExecutor
    ) -> None:
        """Record the files a job finished; queue the good ones for the next commit."""
        for task in tasks:
            e = task.entry
            for reason in task.issues or ():
                self._fail(e, reason)
            if task.failure is not None:
                self._fail(e, task.failure)
                continue
            self.summary.bytes_written += task.written
            self.summary.verified += task.verified
            self.pending.append(task)
            self.pending_bytes += e.node.size
            if len(self.pending) >= _COMMIT_FILES or self.pending_bytes >= _COMMIT_BYTES:
                self._commit(writer, committer)
            self.written += 1
            if self.progress is not None:
                self.progress(self.written, self.summary.bytes_written, _show(e.dest))

    def _commit(self, writer: ContentWriter, committer: ThreadPoolExecutor) -> None:
        """Hand the pending files to the committer once the previous batch is in place (so
        at most two batches of temporary files wait at any time)."""
        if not self.pending:
            return
        batch, self.pending, self.pending_bytes = self.pending, [], 0
        self._join_commit()
        self.committing = committer.submit(self._commit_batch, batch, writer)

    def _commit_batch(
        self, batch: list[FileTask], writer: ContentWriter
    ) -> list[tuple[FileTask, str | None]]:
        """On the committer thread: make the batch durable, then rename it into place."""
        if self.opts.durable:
            fd = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                _syncfs(fd)
            finally:
                os.close(fd)
        renamed: list[tuple[FileTask, str | None]] = []
        for task in batch:
            failpoints.hit("restore-rename")
            renamed.append((task, _rename_into_place(task.tmp, task.entry.dest)))
            writer.live.discard(task)
        return renamed

    def _join_commit(self) -> None:
        """Wait for the batch being committed and record how it went."""
        if self.committing is None:
            return
        committing, self.committing = self.committing, None
        for task, failure in committing.result():
            e = task.entry
            if failure is not None:
                self._fail(e, failure)
                continue
            if self.link_targets and e.dest in self.link_targets:
                self.done.add(e.dest)
            if e.node.flags:
                self.flagged.append((e.dest, e.node.flags))
            self.summary.files += 1
            if e.action == KEEP_BOTH:
                self.summary.kept_both.append(_show(e.dest))


_SMALL_AVERAGE = 1 << 20  # bytes a file: below, one job worker on local storage


def job_workers(files: Sequence[Entry], storage_workers: int) -> int:
    """How many threads run jobs: as many as the storage is worth (reads from object storage
    wait on the network), but on local storage (2) only one when the files are small on
    average.  Their per-file work holds the interpreter lock, and a second thread only trades
    it back and forth: restoring 50,000 files of under 4 KiB took 5.5-6.0 s with one and
    6.7-8.0 s (and 40 % more CPU) with two, 20,000 files of 1-64 KiB 4.4 s against 4.3-5.9 s
    (docs/benchmarks.md); big files still get two, which decompress and decrypt in parallel.
    """
    if storage_workers > 2 or not files:
        return storage_workers
    average = sum(e.node.size for e in files) / len(files)
    return 1 if average < _SMALL_AVERAGE else storage_workers


def _drain(files: list[Entry]) -> Iterator[Entry]:
    """The files in order, each dropped from the list as it is handed out."""
    files.reverse()
    while files:
        yield files.pop()


def _rename_into_place(tmp: bytes, dest: bytes) -> str | None:
    """The last step of every entry; a failed rename leaves no temp file behind (the reason
    is returned)."""
    try:
        try:
            on_paths(os.rename, tmp, dest)
        except PermissionError as exc:
            if exc.errno != errno.EPERM or not _unlock(dest):
                raise
            on_paths(os.rename, tmp, dest)
    except OSError as exc:
        with contextlib.suppress(OSError):
            on_path(os.unlink, tmp)
        return f"cannot rename into place: {exc.strerror}{_locked_hint(dest)}"
    return None


def _unlock(dest: bytes) -> bool:
    """Clear immutable and append-only of an existing file the restore replaces (root
    only); whether they were cleared."""
    try:
        flags = on_path(read_flags_at, dest)
        if not flags & FL_LOCKING:
            return False
        on_path(set_flags, dest, flags & ~FL_LOCKING)
    except OSError:
        return False
    return True


def _locked_hint(dest: bytes) -> str:
    try:
        flags = on_path(read_flags_at, dest)
    except OSError:
        return ""
    if flags & FL_LOCKING:
        return " (the existing file is immutable or append-only; only root can replace it)"
    return ""


def restore_files(
    vault: RestoreVault,
    point: RecoveryPoint,
    opts: RestoreOptions,
    progress: Progress | None = None,
) -> RestoreSummary:
    """Restore ``opts.selectors`` (all when empty) of ``point`` under ``opts.target``."""
    started = time.monotonic()
    root = root_node(point)
    target = prepare_target(opts.target, vault, opts.dry_run)
    summary = RestoreSummary(point_id=point.point_id, target=_show(target))
    with target_lock(target, opts.dry_run):
        if not opts.dry_run:
            remove_stale_temps(target, summary.errors)
        _restore(vault, root, opts, target, summary, progress)
    summary.duration = time.monotonic() - started
    return summary


def _restore(
    vault: RestoreVault,
    root: Node,
    opts: RestoreOptions,
    target: bytes,
    summary: RestoreSummary,
    progress: Progress | None,
) -> None:
    suffix = b".restored-" + summary.point_id[:8].encode()
    with vault.read_lock():
        probe = has_entries(target) or opts.dry_run
        # No reference to the trees outlives the planning: their cache goes with the planner.
        planner = Planner(TreeReader(vault), target, opts.on_conflict, suffix, probe)
        plan = planner.build(root, opts.selectors)
        del planner
        summary.errors.extend(plan.errors)
        summary.skipped.extend(_show(e.dest) for e in plan.skipped)
        if opts.dry_run:
            summary.actions = [(e.action, _show(e.dest)) for e in plan.entries]
        else:
            check_space(target, plan)
            ex = _Executor(vault, opts, target, summary)
            ex.progress = progress
            with staging_folder(ex.staging) as dev:
                ex.target_dev = dev
                ex.run(plan)
