"""The part of a files backup's walk (files/walker.py) that lists a folder: its entries with
their ``lstat`` results in name order (``_listing.c`` through ``Folder.lstat_all``, else
``os.scandir``), symlinks' targets read as they are listed, and a subfolder's own xattrs and
inode flags read from the descriptor it is listed through."""

from __future__ import annotations

import os
import stat
import time

from strongroom.errors import FilesError
from strongroom.files.backuptypes import BackupSummary
from strongroom.files.dirstate import DirState
from strongroom.files.longpath import Folder, on_path
from strongroom.files.metadata import read_flags, read_flags_at, read_xattrs
from strongroom.files.nodes import TEMP_PREFIX, Node
from strongroom.files.reading import RACY_NS
from strongroom.files.selection import Selection


class Targets:
    """Symlinks' targets read as their folder is listed, each before its ``lstat`` (which so
    has the atime the read leaves): one ``lstat`` a symlink less than reading it after and
    looking again (:meth:`TreeWalker._after_readlink`).  For folders with no row to match
    (a first backup, a new folder): a matched row's symlinks are not read at all."""

    __slots__ = ("since", "targets")

    def __init__(self) -> None:
        self.targets: dict[bytes, bytes] = {}
        self.since = time.time_ns()  # before any of its reads

    def read(self, folder: Folder, name: bytes) -> os.stat_result | None:
        """The symlink's lstat after its target is read; None when the read failed (the
        entry is taken the usual way: a failure is reported there)."""
        try:
            target = folder.readlink(name)
        except OSError:
            return None
        self.targets[name] = target
        return folder.lstat(name)

    def take(self, name: bytes, st: os.stat_result, d: DirState) -> bytes | None:
        """``name``'s target if it is a symlink read here.  One made since the listing began
        may have replaced the one whose target was read: no folder row then (as a file
        changed in the racy window gets no cache row)."""
        target = self.targets.pop(name, None) if stat.S_ISLNK(st.st_mode) else None
        if target is not None and st.st_ctime_ns >= self.since - RACY_NS:
            d.clean = False
        return target


def _entry_apart(
    folder: Folder, name: bytes, got: int | None, targets: Targets | None
) -> os.stat_result:
    """The lstat of an entry the compiled listing left: a symlink (None: its target read
    first) or one whose lstat failed (its errno, raised)."""
    if got is not None:
        raise OSError(got, os.strerror(got))
    assert targets is not None
    st = targets.read(folder, name)
    return st if st is not None else folder.lstat(name)  # a failure raises, as scandir's


def show(path: bytes) -> str:
    return os.fsdecode(path)


def flags_of(source: bytes | int) -> int:
    """An entry's inode flags, by path (of any length) or from a descriptor; 0 when they
    cannot be read (its read reports why, if read)."""
    try:
        return read_flags(source) if isinstance(source, int) else on_path(read_flags_at, source)
    except OSError:
        return 0


class FolderEntries:
    """Folder listing, mixed into :class:`TreeWalker`, which owns the state declared here."""

    summary: BackupSummary

    def _error(self, path: bytes | str, reason: str) -> None:
        raise NotImplementedError

    def _named_entries(self, folder: Folder, sel: Selection) -> list[tuple[bytes, os.stat_result]]:
        found = []
        for name in sorted(sel.children):
            try:
                found.append((name, folder.lstat(name)))
            except OSError as exc:
                raise FilesError(f"{show(folder.join(name))}: {exc.strerror}") from None
        return found

    def _scan(
        self, d: DirState, folder: Folder, targets: Targets | None
    ) -> list[tuple[bytes, os.stat_result]]:
        try:
            listed = folder.lstat_all(TEMP_PREFIX, targets is not None)
        except OSError as exc:
            self._unlisted(d, exc)
            return []
        if listed is None:
            return self._scan_entries(d, folder, targets)
        found = []
        for name, got in listed:
            if isinstance(got, os.stat_result):
                found.append((name, got))
                continue
            try:
                found.append((name, _entry_apart(folder, name, got, targets)))
            except OSError as exc:
                d.clean = False
                self._error(folder.join(name), exc.strerror or str(exc))
        return found

    def _scan_entries(
        self, d: DirState, folder: Folder, targets: Targets | None
    ) -> list[tuple[bytes, os.stat_result]]:
        """:meth:`_scan` through ``os.scandir`` (no compiled listing, or no descriptor)."""
        found = []
        try:
            entries = sorted((n, e) for n, e in folder.scandir() if not n.startswith(TEMP_PREFIX))
        except OSError as exc:
            self._unlisted(d, exc)
            return []
        for name, entry in entries:
            try:
                if targets is not None and entry.is_symlink():
                    st = targets.read(folder, name)
                    if st is not None:
                        found.append((name, st))
                        continue
                found.append((name, entry.stat(follow_symlinks=False)))
            except OSError as exc:
                d.clean = False
                self._error(folder.join(name), exc.strerror or str(exc))
        return found

    def _unlisted(self, d: DirState, exc: OSError) -> None:
        reason = f"cannot list directory: {exc.strerror}"
        self._error(d.path, reason)
        d.error, d.clean = reason, False
        if d.node is not None:
            d.node.error = reason

    def _after_readlink(
        self, d: DirState, folder: Folder, name: bytes, st: os.stat_result, node: Node
    ) -> os.stat_result:
        """A symlink's lstat once its target is read: reading it may move its atime (relatime),
        and the node and the folder row record the atime the backup leaves."""
        try:
            again = folder.lstat(name)
        except OSError:
            d.clean = False
            return st
        if again.st_ino != st.st_ino or again.st_ctime_ns != st.st_ctime_ns:
            d.clean = False  # replaced or changed since it was listed: the next backup sees
            return st
        node.atime_ns = again.st_atime_ns
        return again

    def _own_meta(self, d: DirState, folder: Folder | None) -> None:
        """``d``'s xattrs and flags if still to be read (``d.meta``): from the descriptor
        ``folder`` was listed through, else by path (it could not be opened, or was listed by
        ``os.scandir``).  A subfolder's had been read by path as its parent was listed: an
        open, an ioctl, a close and an llistxattr, each walking the whole path, 7.5 us
        against 2 us (docs/benchmarks.md, "Session 37")."""
        if not d.meta:
            return
        d.meta = False
        if d.node is None or d.parent is None:
            return
        fd = None if folder is None else folder.fd if folder.fd is not None else folder.listing
        self._dir_meta(d.parent, d.node, d.path, fd if fd is not None else d.path)

    def _dir_meta(self, d: DirState, node: Node, path: bytes, source: int | bytes) -> None:
        """A subfolder's xattrs and flags, into ``node`` (of ``d``'s entries), from ``source``:
        a descriptor of the subfolder, or a path to it (of any length)."""
        try:
            node.xattrs = (
                read_xattrs(source) if isinstance(source, int) else on_path(read_xattrs, source)
            )
        except OSError as exc:
            d.clean = False
            self._error(path, f"cannot read metadata: {exc.strerror}")
        node.flags = flags_of(source)
