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

A file the plan creates has no temporary name at all: it is created with ``O_TMPFILE`` and
linked into place once durable (``fetch.ContentWriter._create_unnamed``), so a restore killed
before that leaves nothing of it.  A restore of a whole point into an empty target builds the
point in its staging folder, files at their final names, and moves it into the target once
durable (``staged.py``).  A restore killed before its renames leaves the other
temporary files behind; the next restore into the same target removes them (only names
exactly as a restore makes them, in the folders it writes into) while it holds an exclusive
``flock`` on the target folder, so they are never those of another restore still running.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING

from strongroom.files.contents import ThreadedContents, average_size, job_workers
from strongroom.files.longpath import on_path, on_paths
from strongroom.files.metadata import (
    FL_LOCKING,
    Fresh,
    apply_metadata,
    flags_unsupported,
    read_flags_at,
    set_flags,
)
from strongroom.files.nodes import DIR, FILE, TEMP_PREFIX, Node
from strongroom.files.placing import TempNames, make_durable, make_special
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
from strongroom.files.restorejobs import NO_CHUNKS
from strongroom.files.restorestart import early_processes, start_processes, worth_processes
from strongroom.files.restoretail import Link, links_shared
from strongroom.files.restoretypes import RestoreOptions, RestoreSummary
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

if TYPE_CHECKING:  # worker processes load only for a restore that uses them
    from strongroom.files.restoreprocs import ProcessContents, WorkerSetup
    from strongroom.files.staged import Relocation
    from strongroom.files.workerproc import WorkerProcess

Progress = Callable[[int, int, str], None]


def _show(path: bytes) -> str:
    return os.fsdecode(path)


class _Executor:
    def __init__(
        self, vault: RestoreVault, opts: RestoreOptions, target: bytes, summary: RestoreSummary
    ) -> None:
        self.vault, self.opts, self.target, self.summary = vault, opts, target, summary
        self.token = os.urandom(4).hex().encode()
        self.as_root = os.geteuid() == 0
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
        self.names = TempNames(self.staging, self.token, -1)
        self.procs: ProcessContents | None = None  # started before the plan was made
        self.made: Fresh | None = None  # what the staged tree's folders have (_move_out)

    @property
    def tree(self) -> bytes:
        """Where a restore of a whole point into an empty target builds it (``staged.py``),
        or b"": set on :attr:`names` by ``_restore``."""
        return self.names.tree

    def _tmp(self, folder: bytes) -> bytes:
        return self.names(folder)

    def _fail(self, e: Entry, reason: str) -> None:
        self._fail_at(e.dest, reason)

    def _fail_at(self, dest: bytes, reason: str) -> None:
        self.summary.errors.append((_show(dest), reason))

    def _issue(self, e: Entry) -> Callable[[str], None]:
        return lambda reason: self._fail(e, reason)

    def run(self, plan: Plan) -> None:
        """Carry out the plan, taking its entries: each file's entry (and node) is let go
        once the file is in place, so the memory the plan holds shrinks as files are done."""
        files: list[Entry] = []
        links: list[Entry] = []
        others: list[Entry] = []
        entries, plan.entries = plan.entries, []
        for e in entries:
            if e.node.kind != FILE:
                others.append(e)
            else:
                (links if e.link_to is not None else files).append(e)
        del entries
        procs = self._processes(files)  # they start while the folders are made
        try:
            for e in others:  # in plan order: a folder before what is in it
                if e.node.kind == DIR:
                    self._dir(e)
                else:
                    self._special(e)
        except BaseException:
            if procs is not None:
                procs.close()
            raise
        self.link_targets = {e.link_to for e in links if e.link_to is not None}
        self._contents(files, procs)
        self._group_links([(e.folder, e.name, e.link_to) for e in links if e.link_to])
        if self.tree:
            self._move_out()
        self._finish()

    def run_tree(self, root: Node, procs: ProcessContents) -> None:
        """The whole point into an empty target, planned by the workers as they go
        (``restoretree.py``), built in the staging folder and moved into the target once
        durable (``staged.py``); then the hard-link groups (shared with the workers:
        ``restoretail.py``), folder metadata and flags."""
        from strongroom.files.restoretree import restore_tree

        self.summary.processes = len(procs.pool.workers)
        try:
            out = restore_tree(
                self.vault, procs, root, self.tree or self.target, self._setup(), self
            )
            out.count_into(self.summary)
            self.dirs, self.flagged = out.dirs, out.flagged
            failed = {path for path, _ in out.errors}  # each group's first member is written
            self.done = {dest for dest in out.firsts if _show(dest) not in failed}
            self._group_links(out.links, procs.pool.workers)
        except BaseException:
            procs.pool.close(abandon=True)
            raise
        procs.pool.close()
        if self.tree:
            self._move_out()
        self._finish()

    def _group_links(self, links: list[Link], workers: Sequence[WorkerProcess] = ()) -> None:
        """The other members of hard-link groups linked to their group's first (one not in
        place fails them): at their final names in a staged tree, shared with ``workers``
        (``restoretail.py``); elsewhere each by a temporary name renamed into place."""
        ready = []
        for folder, name, first in links:
            if first in self.done:
                ready.append((folder, name, first))
            else:
                self._fail_at(
                    os.path.join(folder, name), f"hard link target {_show(first)} was not restored"
                )
        if not self.tree:
            for folder, name, first in ready:
                self._link_by_temporary(folder, name, first)
            return
        made, failed = links_shared(workers, ready)
        self.summary.links += made
        self.summary.errors += [(_show(dest), reason) for dest, reason in failed]

    def _move_out(self) -> None:
        """The staged tree into the target once durable; the paths kept for later (folders,
        inode flags, what is reported) follow it (``staged.py``)."""
        from strongroom.files.staged import move_out

        self.made = self.names.made_folders()  # asked of the tree before it goes
        if self.opts.durable:
            make_durable(self.target)
        moved = move_out(self.tree, self.target, _kept_suffix(self.summary))
        s = self.summary
        s.kept_both += [_show(p) for p in moved.kept_both]
        s.errors = [(moved.shown(p), r) for p, r in s.errors]
        s.errors += [(_show(p), r) for p, r in moved.errors]
        s.warnings = [(moved.shown(p), r) for p, r in s.warnings]
        s.skipped = [moved.shown(p) for p in s.skipped]
        self.dirs = [m for m in (_moved_entry(e, moved) for e in self.dirs) if m is not None]
        flagged = ((moved.final(dest), flags) for dest, flags in self.flagged)
        self.flagged = [(dest, flags) for dest, flags in flagged if dest is not None]

    def _finish(self) -> None:
        """Folder metadata, children first, then inode flags.  A folder made in the staged
        tree is as that tree's root was (``made_folders``): its owner need not change, its
        xattrs need no listing (25,000 files in 13,000 folders: 0.28 → 0.2 s)."""
        made = self.made
        for e in reversed(self.dirs):
            fresh = made if e.action == CREATE else None
            try:
                on_path(
                    apply_metadata,
                    e.dest,
                    e.node,
                    as_root=self.as_root,
                    issue=self._issue(e),
                    fresh=fresh,
                )
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
        failure = make_special(
            e.node, self._tmp(e.folder), e.dest, as_root=self.as_root, issue=self._issue(e)
        )
        if failure is not None:
            self._fail(e, failure)
        else:
            self.summary.others += 1

    def _link_by_temporary(self, folder: bytes, name: bytes, link_to: bytes) -> None:
        """``name`` in ``folder`` made a hard link to ``link_to`` through a temporary name
        (a target outside a staged tree may hold ``name`` already)."""
        dest, tmp = os.path.join(folder, name), self._tmp(folder)
        try:
            on_paths(os.link, link_to, tmp)
            on_paths(os.rename, tmp, dest)
        except OSError as exc:
            self._fail_at(dest, f"cannot create hard link: {exc.strerror}")
            with contextlib.suppress(OSError):
                on_path(os.unlink, tmp)
            return
        self.summary.links += 1

    # --- file contents ---------------------------------------------------------------------

    def _processes(self, files: list[Entry]) -> ProcessContents | None:
        """Worker processes for the files: those started early if the plan is worth them,
        else new ones if it is (None: threads)."""
        procs, self.procs = self.procs, None
        if self.opts.processes is None and not worth_processes(len(files), average_size(files)):
            if procs is not None:
                procs.close()
            return None
        return procs or start_processes(self.vault, self.opts.processes)

    def _setup(self) -> WorkerSetup:
        from strongroom.files.restoreprocs import WorkerSetup

        return WorkerSetup(
            self.target,
            self.staging,
            self.token,
            self.names.target_dev,
            self.opts.verify,
            self.as_root,
            self.opts.durable,
            tree=self.tree,
        )

    def _sort(self, files: list[Entry]) -> None:
        """Put the files in the order of the packs that hold their first chunk (files without
        chunks first, unknown chunks last); each entry's ``place`` says where that chunk is."""
        place_of = self.vault.place_of
        for e in files:
            e.place = place_of(e.node.chunks[0]) if e.node.chunks else NO_CHUNKS
        files.sort(key=attrgetter("place"))

    def _contents(self, files: list[Entry], procs: ProcessContents | None) -> None:
        """The files by worker processes (each batch in the order of the packs) or threads
        (all in that order); ``files`` is emptied.  Workers look their chunks up in their own
        index: sorting here too would cost as much again on the parent's critical path."""
        if procs is not None:
            self.summary.processes = len(procs.pool.workers)
            procs.run(files, self._setup(), self)
            return
        self._sort(files)
        workers = self.opts.workers or job_workers(files, self.vault.capabilities.read_workers)
        ThreadedContents(
            self.vault,
            self.names,
            self.target,
            verify=self.opts.verify,
            as_root=self.as_root,
            durable=self.opts.durable,
        ).run(files, workers, self)

    # ContentSink: what became of the files

    def failed(self, e: Entry, reason: str) -> None:
        self._fail(e, reason)

    def wrote(self, files: int, nbytes: int, verified: int, last: bytes) -> None:
        self.summary.bytes_written += nbytes
        self.summary.verified += verified
        self.written += files
        if self.progress is not None:
            if self.tree and last.startswith(self.tree + b"/"):  # shown where it will be
                last = self.target + last[len(self.tree) :]
            self.progress(self.written, self.summary.bytes_written, _show(last))

    def placed(self, e: Entry) -> None:
        if self.link_targets and e.dest in self.link_targets:
            self.done.add(e.dest)
        if e.node.flags:
            self.flagged.append((e.dest, e.node.flags))
        self.summary.files += 1
        if e.action == KEEP_BOTH:
            self.summary.kept_both.append(_show(e.dest))


def _moved_entry(e: Entry, moved: Relocation) -> Entry | None:
    """A folder's entry where the move put it (None: left behind, so gone)."""
    dest = moved.final(e.dest)
    if dest is None:
        return None
    folder, name = os.path.split(dest)
    return Entry(folder, name, e.node, e.action)


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
        procs = early_processes(vault, point, opts, target)
        try:
            _restore(vault, root, opts, target, summary, progress, procs)
        finally:
            if procs is not None:
                procs.close()  # unless used (then closed already): an early failure
    summary.duration = time.monotonic() - started
    return summary


def _restore(
    vault: RestoreVault,
    root: Node,
    opts: RestoreOptions,
    target: bytes,
    summary: RestoreSummary,
    progress: Progress | None,
    procs: ProcessContents | None = None,
) -> None:
    with vault.read_lock():
        probe = has_entries(target) or opts.dry_run
        whole = not probe and not opts.selectors  # the whole point into an empty target
        if whole:  # built in the staging folder, then moved into the target (staged.py)
            from strongroom.files.staged import make_tree

            ex = _executor(vault, opts, target, summary, progress)
            with staging_folder(ex.staging) as dev:
                ex.names.target_dev = dev
                ex.names.tree = make_tree(ex.staging) if dev >= 0 else b""
                if procs is not None:
                    ex.run_tree(root, procs)
                    return
                plan = _plan(vault, root, opts, ex.tree or target, summary, probe)
                check_space(target, plan)
                ex.run(plan)
            return
        plan = _plan(vault, root, opts, target, summary, probe)
        if opts.dry_run:
            summary.actions = [(e.action, _show(e.dest)) for e in plan.entries]
            return
        check_space(target, plan)
        ex = _executor(vault, opts, target, summary, progress)
        ex.procs = procs
        with staging_folder(ex.staging) as dev:
            ex.names.target_dev = dev
            ex.run(plan)


def _plan(
    vault: RestoreVault,
    root: Node,
    opts: RestoreOptions,
    target: bytes,
    summary: RestoreSummary,
    probe: bool,
) -> Plan:
    """What to restore where (no reference to the trees outlives it: their cache goes with
    the planner); its errors and skipped entries go to the summary."""
    suffix = _kept_suffix(summary)
    plan = Planner(TreeReader(vault), target, opts.on_conflict, suffix, probe).build(
        root, opts.selectors
    )
    summary.errors.extend(plan.errors)
    summary.skipped.extend(_show(e.dest) for e in plan.skipped)
    return plan


def _kept_suffix(summary: RestoreSummary) -> bytes:
    """What ``keep-both`` appends to a name already taken: ``.restored-<8 hex of the point>``."""
    return b".restored-" + summary.point_id[:8].encode()


def _executor(
    vault: RestoreVault,
    opts: RestoreOptions,
    target: bytes,
    summary: RestoreSummary,
    progress: Progress | None,
) -> _Executor:
    ex = _Executor(vault, opts, target, summary)
    ex.progress = progress
    return ex
