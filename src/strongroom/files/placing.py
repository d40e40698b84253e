"""Putting a restore's entries into place: their temporary names, making them durable, and
the rename (or, for a file created without a name, the link) that gives each its final name
(see :mod:`strongroom.files.restore`)."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import functools
import itertools
import os
import resource
import stat
from collections.abc import Callable

from strongroom.files.longpath import on_path, on_paths
from strongroom.files.metadata import (
    FL_LOCKING,
    Fresh,
    apply_metadata,
    ifmt_of,
    process_umask,
    read_flags_at,
    set_flags,
)
from strongroom.files.nodes import FIFO, SYMLINK, TEMP_PREFIX, Node


class TempNames:
    """Fresh temporary names for one restore (thread-safe: jobs name their files too): in
    the staging folder, or in the entry's own folder when that is on another file system
    (a mount point below the target: a rename cannot cross it).  Worker processes of one
    restore share its token and count from their own ``first``.  ``tree``: the folder a
    restore of a whole point into an empty target builds it in (``staged.py``), where
    files are created at their final names."""

    def __init__(
        self, staging: bytes, token: bytes, target_dev: int, first: int = 1, tree: bytes = b""
    ) -> None:
        self.staging, self.token, self.target_dev = staging, token, target_dev
        self.tree = tree
        self.counter = itertools.count(first)  # next() is atomic
        self.staged: dict[bytes, bool] = {}  # folder -> whether its temporaries are staged

    def __call__(self, folder: bytes) -> bytes:
        n = str(next(self.counter)).encode()
        staged = self.staged.get(folder)
        if staged is None:
            staged = self.staged[folder] = self._on_target_fs(folder)
        if staged:
            return os.path.join(self.staging, n)
        return os.path.join(folder, TEMP_PREFIX + self.token + b"-" + n)

    def fresh(self, tmp: bytes) -> Fresh | None:
        """What a file created at ``tmp`` (a name of this object's) has already, if it is in
        the staging folder and that folder is private: mode 0700 and no ACL, so a file's
        final mode can be its mode from the start (``metadata.create_mode``).  The same for
        a file in the staged tree: its folders, made 0700 by the restore inside that tree,
        get their own metadata only at the end, so each is as the tree's root is."""
        folder = os.path.dirname(tmp)
        if folder == self.staging:
            return self._staged_fresh
        return self._tree_fresh if self.in_tree(folder) else None

    def in_tree(self, folder: bytes) -> bool:
        """Whether ``folder`` is in the staged tree, where the files the plan creates are
        made at their final names (``staged.py``)."""
        tree = self.tree
        return bool(tree) and (folder == tree or folder.startswith(tree + b"/"))

    @functools.cached_property
    def _staged_fresh(self) -> Fresh | None:
        return _fresh_in(self.staging)  # looked at once the folder exists (the first file)

    @functools.cached_property
    def _tree_fresh(self) -> Fresh | None:
        return _fresh_in(self.tree)

    def made_folders(self) -> Fresh | None:
        """What a folder made in the staged tree has until its metadata is applied (None:
        no staged tree, or not a private one); asked before the tree is moved out."""
        fresh = self._tree_fresh if self.tree else None
        return None if fresh is None else dataclasses.replace(fresh, node_mode=False)

    def _on_target_fs(self, folder: bytes) -> bool:
        if self.target_dev < 0:
            return False
        try:
            return bool(on_path(os.lstat, folder).st_dev == self.target_dev)
        except OSError:
            return False  # creating the entry reports it


def _fresh_in(folder: bytes) -> Fresh | None:
    """A new file's owner in ``folder`` (its group if the folder is set-group-ID); None unless
    the folder is private (0700, no ACL) and the umask known."""
    umask = process_umask()
    try:
        st = os.stat(folder)
    except OSError:
        return None
    try:
        keys = os.listxattr(folder)
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return None
        keys = []  # no xattrs, so no ACL either
    acl = any(key.startswith("system.posix_acl") for key in keys)
    if umask is None or acl or st.st_mode & 0o077:
        return None
    gid = st.st_gid if st.st_mode & stat.S_ISGID else os.getegid()
    return Fresh(os.geteuid(), gid, umask, bare=not keys)


_LIBC = ctypes.CDLL(None, use_errno=True)
_DESCRIPTORS_SPARE = 1024  # beyond what a restore's unnamed files hold: the vault, sockets
_SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>: start writeback of dirty pages, do not wait


def make_durable(target: bytes) -> None:
    """Everything written to the target's file system so far reaches the disk: one
    ``syncfs`` for a batch of files rather than an ``fsync`` each."""
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fn = getattr(_LIBC, "syncfs", None)
        if fn is None or fn(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def start_writeback(fd: int) -> None:
    """Start writing a finished file's pages to the disk without waiting (Linux
    ``sync_file_range``), so the batch's ``syncfs`` finds the I/O done or under way instead
    of issuing all of it at once while the writer waits (git's ``core.fsyncMethod=batch``
    does the same).  Advisory: where the call is missing or fails, the ``syncfs`` does it."""
    fn = getattr(_LIBC, "sync_file_range", None)
    if fn is not None:
        fn(fd, ctypes.c_int64(0), ctypes.c_int64(0), _SYNC_FILE_RANGE_WRITE)


def drop_cached(path: bytes) -> None:
    """Let the kernel drop a file's pages from the page cache once they are on the disk.

    A restore does not read back what it wrote, and on a VM whose free memory went back to the
    host every new page-cache page costs a fault in the host: pages released after each
    durable batch are the ones the next batch gets.  Advisory: failures are ignored."""
    try:
        fd = on_path(os.open, path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        drop_cached_fd(fd)
    finally:
        os.close(fd)


def make_special(
    node: Node, tmp: bytes, dest: bytes, *, as_root: bool, issue: Callable[[str], None]
) -> str | None:
    """A symlink, FIFO, socket or device node created under ``tmp`` with its metadata, then
    renamed to ``dest``; the reason it failed, or None."""
    try:
        if node.kind == SYMLINK:
            on_path(lambda p: os.symlink(node.target or b"", p), tmp)
        elif node.kind == FIFO:
            on_path(os.mkfifo, tmp, 0o600)
        else:
            on_path(os.mknod, tmp, 0o600 | ifmt_of(node.kind), node.rdev)
        on_path(apply_metadata, tmp, node, as_root=as_root, issue=issue)
    except OSError as exc:
        return f"cannot create {node.kind}: {exc.strerror}"
    return rename_into_place(tmp, dest)


def rename_into_place(tmp: bytes, dest: bytes) -> str | None:
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


def link_into_place(fd: int, tmp: bytes, dest: bytes) -> str | None:
    """The last step of a file created without a name (``O_TMPFILE``): linked at ``dest``
    (through ``/proc``, which needs no capability, unlike ``AT_EMPTY_PATH``), then closed;
    a failed link leaves nothing behind (the reason is returned).  A link does not replace
    an entry as a rename does: where something took ``dest`` since the plan, the file is
    linked at its temporary name ``tmp`` and renamed over it."""
    try:
        try:
            on_path(_link_fd, dest, fd)
        except FileExistsError:
            on_path(_link_fd, tmp, fd)
            return rename_into_place(tmp, dest)
    except OSError as exc:
        return f"cannot link into place: {exc.strerror}"
    finally:
        os.close(fd)
    return None


def _link_fd(path: bytes, fd: int) -> None:
    # A dir_fd makes Python call linkat(AT_SYMLINK_FOLLOW); without one it calls link(),
    # which would link the /proc symlink itself (EXDEV).  The path is absolute: fd unused.
    os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=_root(), follow_symlinks=True)


@functools.cache
def _root() -> int:
    return os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def descriptors_for(count: int) -> bool:
    """Whether this process may hold ``count`` more descriptors, its soft limit raised
    towards the hard one if need be (as systemd asks of programs that need many; Debian's
    soft limit is 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + _DESCRIPTORS_SPARE
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            return False
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (OSError, ValueError):
            return False
    return True


def drop_cached_fd(fd: int) -> None:
    """:func:`drop_cached` of an open file."""
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


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
