"""The backup's worker side: read one file (or a batch of small ones) into chunks.

Runs in worker threads.  Each file is opened without following symlinks, read and fstat-ed;
the fstat must match the walker's lstat (inode, size, mtime, ctime), which proves the descriptor
is the file the walker saw and that it did not move while it was read.  Otherwise it is read
once more against that fstat and, if it moves again, recorded as inconsistent (its content is
whatever the second read saw).

A small file the walker saw as a plain regular one is read in one compiled call
(``_smallread.c``: open, read, fstat, flags, xattrs, close); when that call finds anything
unusual (the file changed, grew, failed) the file is read again the general way below.
"""

from __future__ import annotations

import os
import stat
import time
from typing import Any

from strongroom.files.cacherows import CacheEntry, CacheRow
from strongroom.files.content import Content, ContentReader, open_for_reading
from strongroom.files.hardlinks import LinkedRead, LinkedReads
from strongroom.files.metadata import (
    PERMS,
    Names,
    flags_read,
    read_flags,
    read_xattrs,
    xattrs_listed,
)
from strongroom.files.nodes import Node
from strongroom.records import dataclass

try:  # compiled (setup.py); without it every file is read the general way
    from strongroom.files import _smallread
except ImportError:  # pragma: no cover - a build without a C compiler
    _smallread = None  # type: ignore[assignment]

_NOATIME = hasattr(os, "O_NOATIME")

# A file changed within this window before we stat it may change again within the same
# timestamp tick after we read it; it is not put in the files cache (git's "racily clean").
RACY_NS = 100_000_000


@dataclass(slots=True)
class FileItem:
    """A file the walker wants read; ``owner`` is the walker's directory record."""

    owner: Any
    directory: bytes
    node: Node
    cached: CacheEntry | None
    # The walker's lstat of the path: it stands in for the fstat before the first read (the
    # fstat after the read still proves the descriptor is that file, unchanged), one system
    # call less per file.
    st: os.stat_result | None = None


@dataclass(slots=True)
class FileOutcome:
    item: FileItem
    status: str  # "new", "changed", "unchanged" or "error"
    nread: int = 0
    error: str = ""
    cache_row: CacheRow | None = None
    meta_error: str = ""  # the content is stored, but its xattrs could not be read


def cache_row(
    directory: bytes, node: Node, ino: int, size: int, mtime_ns: int, ctime_ns: int
) -> CacheRow:
    """A file's files-cache row: its folder and name, the stat it was read at, and what the
    read left in its node (chunks, extents, flags, xattrs)."""
    return (
        directory,
        node.name,
        ino,
        size,
        mtime_ns,
        ctime_ns,
        node.chunks,
        node.extents,
        node.flags,
        node.xattrs,
    )


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (
        a.st_size == b.st_size
        and a.st_mtime_ns == b.st_mtime_ns
        and a.st_ctime_ns == b.st_ctime_ns
        and a.st_ino == b.st_ino
    )


def _fill_node(node: Node, st: os.stat_result, content: Content, names: Names) -> None:
    node.mode = st.st_mode & PERMS
    node.uid, node.gid = st.st_uid, st.st_gid
    node.user, node.group = names.user(st.st_uid), names.group(st.st_gid)
    node.mtime_ns, node.atime_ns = st.st_mtime_ns, st.st_atime_ns
    node.chunks = content.chunks
    node.extents = content.extents
    node.size = st.st_size if content.extents is not None else content.nread
    # set either way: the lstat a node was made from may have shown other names since gone
    node.link = f"{st.st_dev}:{st.st_ino}" if st.st_nlink > 1 else None


class FileReader:
    """Reads :class:`FileItem` batches for the backup; thread-safe."""

    def __init__(self, content: ContentReader, names: Names) -> None:
        self.content = content
        self.names = names
        self.links = LinkedReads()

    def batch(self, items: list[FileItem]) -> list[FileOutcome]:
        return [self.one(item) for item in items]

    def one(self, item: FileItem) -> FileOutcome:
        folder = item.directory  # absolute: os.path.join, without its checks, per file
        path = (folder if folder[-1:] == b"/" else folder + b"/") + item.node.name
        st = item.st
        if st is not None and st.st_nlink > 1:
            seen = self.links.take(st)
            if seen is not None:
                return self._linked(item, st, seen)
        if (
            st is not None
            and st.st_size < self.content.small
            and _smallread is not None
            and stat.S_ISREG(st.st_mode)
            and st.st_blocks * 512 >= st.st_size  # not sparse (else its holes are kept)
        ):
            out = self._read_small(item, path, st)
            if out is not None:
                return out
        try:
            fd = open_for_reading(path)
        except OSError as exc:
            return FileOutcome(item, "error", error=exc.strerror or str(exc))
        try:
            return self._read(item, fd)
        except OSError as exc:
            return FileOutcome(item, "error", error=exc.strerror or str(exc))
        finally:
            os.close(fd)

    def _linked(self, item: FileItem, st: os.stat_result, seen: LinkedRead) -> FileOutcome:
        """Another name of an inode read already (hardlinks.py): not read again."""
        node = item.node
        _fill_node(node, st, seen.content, self.names)
        node.inconsistent = False
        node.xattrs, node.flags = seen.xattrs, seen.flags
        return self._outcome(item, st, seen.content, seen.started, True, "", 0)

    def _read_small(self, item: FileItem, path: bytes, st: os.stat_result) -> FileOutcome | None:
        """The compiled read of a small file; None when it must be read the general way."""
        started = time.time_ns()
        view = self.content.buffer()
        try:
            got = _smallread.read_small(
                path, view, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, _NOATIME
            )
        except OSError:
            return None  # the general way reports it (or copes: a long path)
        if got is None:
            return None
        filled, raw_flags, flags_err, pairs, xattrs_err = got
        content = self.content.small_content(view, filled)
        node = item.node
        _fill_node(node, st, content, self.names)
        node.inconsistent = False
        meta_error = ""
        try:
            node.xattrs = xattrs_listed(pairs, xattrs_err)
            node.flags = flags_read(raw_flags, flags_err)
        except OSError as exc:
            meta_error = f"cannot read metadata: {exc.strerror}"
        return self._outcome(item, st, content, started, True, meta_error, filled)

    def _read(self, item: FileItem, fd: int) -> FileOutcome:
        nread = 0
        consistent = False
        before = item.st
        for _ in range(2):
            started = time.time_ns()
            if before is None:
                before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return FileOutcome(item, "error", error="no longer a regular file")
            try:
                content = self.content.read(fd, before)
            except OSError:
                if before is not item.st:
                    raise
                before = None  # replaced since the walker saw it (say, by a FIFO): look again
                continue
            nread += content.nread
            after = os.fstat(fd)
            if _same(before, after):
                consistent = True
                break
            before = after
        assert before is not None  # set by every pass that gets this far
        node = item.node
        _fill_node(node, before, content, self.names)
        node.inconsistent = not consistent
        meta_error = ""
        try:
            node.xattrs = read_xattrs(fd)
            node.flags = read_flags(fd)
        except OSError as exc:
            meta_error = f"cannot read metadata: {exc.strerror}"
        return self._outcome(item, before, content, started, consistent, meta_error, nread)

    def _outcome(
        self,
        item: FileItem,
        st: os.stat_result,
        content: Content,
        started: int,
        consistent: bool,
        meta_error: str,
        nread: int,
    ) -> FileOutcome:
        """The outcome of a file read (``st``: its stat as read): its status, and its cache
        row when it can have one."""
        node = item.node
        cached = item.cached
        if cached is None:
            status = "new"
        else:
            same = cached.chunks == content.chunks and cached.extents == content.extents
            status = "unchanged" if same else "changed"
        row: CacheRow | None = None
        fresh = max(st.st_mtime_ns, st.st_ctime_ns) >= started - RACY_NS
        if consistent and not meta_error and nread:  # not again for a name kept already
            self.links.keep(st, content, node.flags, node.xattrs, started)
        if consistent and not fresh and not meta_error:  # a row records the flags read
            row = cache_row(
                item.directory, node, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
            )
        return FileOutcome(item, status, nread, cache_row=row, meta_error=meta_error)
