"""Restoring files out of an image point, through the files engine's planner (selectors,
conflict policies) and metadata code (:func:`apply_metadata`: xattrs and ACLs, owner when
root, mode, ns times), so both kinds of restore treat metadata alike.

The files engine's content writer fetches vault chunks by id; a guest file's bytes come from
a filesystem inside a disk instead, so contents are written here: under a temporary name in
the destination folder, only the data extents (holes stay holes), then ``syncfs`` once and a
rename into place, as the files engine does.  A file that cannot be read (a damaged
filesystem) is reported and the rest restored.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import time
from collections.abc import Callable

from strongroom.errors import GuestFilesError
from strongroom.files.metadata import apply_metadata, ifmt_of
from strongroom.files.nodes import DIR, FIFO, FILE, SYMLINK, TEMP_PREFIX
from strongroom.files.placing import make_durable
from strongroom.files.plan import CREATE, KEEP_BOTH, REPLACE, SKIP_META, Entry, Planner
from strongroom.files.restoretypes import RestoreOptions, RestoreSummary
from strongroom.files.target import has_entries, prepare_target, remove_stale_temps, target_lock
from strongroom.guestfiles.filesystems import damage_errors
from strongroom.guestfiles.tree import GuestNode, GuestPoint, GuestTree

__all__ = ["restore_guest_files"]

_COPY = 1 << 20


def _show(path: bytes) -> str:
    return os.fsdecode(path)


class _Writer:
    def __init__(self, opts: RestoreOptions, summary: RestoreSummary) -> None:
        self.opts, self.summary = opts, summary
        self.token = os.urandom(4).hex().encode()
        self.counter = itertools.count(1)
        self.as_root = os.geteuid() == 0
        self.dirs: list[Entry] = []
        self.renames: list[tuple[bytes, Entry]] = []
        self.done: set[bytes] = set()

    def tmp(self, folder: bytes) -> bytes:
        name = TEMP_PREFIX + self.token + b"-" + str(next(self.counter)).encode()
        return os.path.join(folder, name)

    def fail(self, e: Entry, reason: str) -> None:
        self.summary.errors.append((_show(e.dest), reason))

    def issue(self, e: Entry) -> Callable[[str], None]:
        return lambda reason: self.fail(e, reason)

    def directory(self, e: Entry) -> None:
        try:
            if e.action == REPLACE:
                os.unlink(e.dest)
            if e.action in (CREATE, REPLACE, KEEP_BOTH):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(e.dest, 0o700)
        except OSError as exc:
            self.fail(e, f"cannot create directory: {exc.strerror}")
            return
        self.summary.dirs += 1
        if e.action != SKIP_META:
            self.dirs.append(e)

    def special(self, e: Entry) -> None:
        node, tmp = e.node, self.tmp(e.folder)
        try:
            if node.kind == SYMLINK:
                os.symlink(node.target or b"", tmp)
            elif node.kind == FIFO:
                os.mkfifo(tmp, 0o600)
            else:
                os.mknod(tmp, 0o600 | ifmt_of(node.kind), node.rdev)
        except OSError as exc:
            self.fail(e, f"cannot create {node.kind}: {exc.strerror}")
            return
        apply_metadata(tmp, node, as_root=self.as_root, issue=self.issue(e))
        self.renames.append((tmp, e))
        self.summary.others += 1

    def file(self, e: Entry) -> None:
        node = e.node
        assert isinstance(node, GuestNode) and node.fs is not None
        tmp = self.tmp(e.folder)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            digest = self._copy(node, fd)
            os.ftruncate(fd, node.size)
            apply_metadata(fd, node, as_root=self.as_root, issue=self.issue(e))
        except damage_errors() as exc:  # OSError among them
            os.close(fd)
            os.unlink(tmp)
            self.fail(e, f"cannot read it from the image: {exc}")
            return
        os.close(fd)
        if self.opts.verify and _digest_of(tmp, node) != digest:
            os.unlink(tmp)
            self.fail(e, "verification failed: the written file differs")
            return
        self.summary.verified += self.opts.verify
        self.renames.append((tmp, e))

    def _copy(self, node: GuestNode, fd: int) -> bytes:
        assert node.fs is not None
        src = node.fs.open(node.ref[1])
        h = hashlib.sha256()
        for offset, length in node.data_extents():
            src.seek(offset)
            left, at = length, offset
            while left > 0:
                data = src.read(min(_COPY, left))
                if not data:
                    raise GuestFilesError(f"short read at offset {at}")
                os.pwrite(fd, data, at)
                h.update(data)
                at, left = at + len(data), left - len(data)
                self.summary.bytes_written += len(data)
        return h.digest()

    def link(self, e: Entry) -> None:
        assert e.link_to is not None
        if e.link_to not in self.done:
            self.fail(e, f"hard link target {_show(e.link_to)} was not restored")
            return
        tmp = self.tmp(e.folder)
        try:
            os.link(e.link_to, tmp)
            os.rename(tmp, e.dest)
        except OSError as exc:
            self.fail(e, f"cannot create hard link: {exc.strerror}")
            return
        self.summary.links += 1

    def commit(self, target: bytes) -> None:
        """Make the written files durable, then give them their names."""
        if self.opts.durable and self.renames:
            make_durable(target)
        for tmp, e in self.renames:
            try:
                os.rename(tmp, e.dest)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                self.fail(e, f"cannot rename into place: {exc.strerror}")
                continue
            if e.node.kind == FILE:
                self.summary.files += 1
                self.done.add(e.dest)
                if e.action == KEEP_BOTH:
                    self.summary.kept_both.append(_show(e.dest))
        self.renames = []


def _digest_of(path: bytes, node: GuestNode) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for offset, length in node.data_extents():
            f.seek(offset)
            h.update(f.read(length))
    return h.digest()


def restore_guest_files(guest: GuestPoint, opts: RestoreOptions) -> RestoreSummary:
    """Restore ``opts.selectors`` (``/DISK/VOLUME/PATH``; all when empty) under
    ``opts.target``."""
    started = time.monotonic()
    vault, point = guest.vault, guest.point
    target = prepare_target(opts.target, vault, opts.dry_run)
    summary = RestoreSummary(point_id=point.point_id, target=_show(target))
    suffix = b".restored-" + point.short_id[:8].encode()
    with target_lock(target, opts.dry_run), vault.read_lock():
        if not opts.dry_run:
            remove_stale_temps(target, summary.errors)
        trees = GuestTree(guest, strict=False)
        probe = has_entries(target) or opts.dry_run
        planner = Planner(trees, target, opts.on_conflict, suffix, probe)
        plan = planner.build(trees.root(), opts.selectors)
        summary.errors.extend(trees.failures)
        summary.errors.extend(plan.errors)
        summary.skipped.extend(_show(e.dest) for e in plan.skipped)
        if opts.dry_run:
            summary.actions = [(e.action, _show(e.dest)) for e in plan.entries]
        else:
            _run(plan.entries, opts, target, summary)
    summary.duration = time.monotonic() - started
    return summary


def _disk_order(e: Entry) -> int:
    """Where a file's data starts in its volume (0 when the filesystem cannot say)."""
    node = e.node
    assert isinstance(node, GuestNode) and node.fs is not None
    runs = getattr(node.fs, "volume_runs", None)
    try:
        found = runs(node.ref[1]) if runs is not None else None
    except damage_errors():
        return 0  # reading it reports the damage
    return found[0][0] if found else 0


def _run(entries: list[Entry], opts: RestoreOptions, target: bytes, s: RestoreSummary) -> None:
    """Folders first (parents before children), then files in the order their data lies
    on the disk, so the reader's cache and read-ahead serve neighbours instead of fetching
    the chunks they share again; hard links last."""
    w = _Writer(opts, s)
    links, files = [], []
    for e in entries:
        if e.node.kind == DIR:
            w.directory(e)
        elif e.node.kind == FILE and e.link_to is not None:
            links.append(e)
        elif e.node.kind == FILE:
            files.append(e)
        else:
            w.special(e)
    files.sort(key=_disk_order)
    for e in files:
        w.file(e)
    w.commit(target)
    for e in links:
        w.link(e)
    for e in reversed(w.dirs):
        apply_metadata(e.dest, e.node, as_root=w.as_root, issue=w.issue(e))
