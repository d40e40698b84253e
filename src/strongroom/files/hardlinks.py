"""Hard links read once: a file with more names than one, already read by this process in
this backup and not changed since, gets that read's content for its other names.

Why: a backup reads a file by each of its names (each is a path the walk meets), and a tree
of hard links (snapshots made with ``cp -al`` or rsync's ``--link-dest``, package caches,
git clones made with ``--local``) read each inode as many times as it has names.  10,000
small files with 20,000 more names took 0.62 CPU s of reads here that 10,000 would do.

The second name's ``lstat`` (from the walk) must show the inode as the read saw it: the same
size, mtime and ctime.  Writing changes mtime, and ctime moves with every change to the inode
(a new name or a removed one, chmod, xattrs), so a match means the same bytes as far as the
files cache itself can tell.  What is kept: the content's chunk ids, the flags and xattrs,
and when the read began (the files cache's racy-row rule uses it).  An inode leaves once all
its names were met, and the table holds at most :data:`MOST` inodes (names outside the
backup never come): past it, other names are read as before.
"""

from __future__ import annotations

import os
import struct
import threading

from strongroom.files.content import Content
from strongroom.files.nodes import Xattrs
from strongroom.records import dataclass

MOST = 100_000  # inodes kept at once: some 20-25 MiB for small files at most
# A read kept packed (see _pack): size, mtime, ctime, flags, when it began, bytes read, names
# left; then its chunk ids.  As objects (a LinkedRead, its Content, a chunk list, a key tuple
# and seven ints) one took some 580 bytes, packed 230: a tree whose names of each inode are
# met by two processes keeps every inode in each (session 37: 10,000 inodes, 2.9 MiB less).
_PACKED = struct.Struct("<qqqQqqQ")
_ID = 32


@dataclass(slots=True)
class LinkedRead:
    """A read of an inode with several names, for its other names."""

    size: int
    mtime_ns: int
    ctime_ns: int
    content: Content
    flags: int
    xattrs: Xattrs
    started: int  # time.time_ns() as the read began
    left: int  # names not met yet


class LinkedReads:
    """Reads of this process's files with more than one name, by (device, inode);
    thread-safe (the reader threads share one)."""

    def __init__(self, most: int = MOST) -> None:
        self._reads: dict[int, bytes | LinkedRead] = {}
        self._lock = threading.Lock()
        self._most = most

    def __len__(self) -> int:
        return len(self._reads)

    def take(self, st: os.stat_result) -> LinkedRead | None:
        """The read of ``st``'s inode if it was read and is unchanged (counted as one name
        met); else None (read it)."""
        key = _key(st)
        with self._lock:
            kept = self._reads.get(key)
            if kept is None:
                return None
            seen = kept if isinstance(kept, LinkedRead) else _unpack(kept)
            if (seen.size, seen.mtime_ns, seen.ctime_ns) != (
                st.st_size,
                st.st_mtime_ns,
                st.st_ctime_ns,
            ):
                del self._reads[key]  # changed: read again, and kept as read then
                return None
            seen.left -= 1
            if seen.left <= 0:
                del self._reads[key]
            elif not isinstance(kept, LinkedRead):
                self._reads[key] = _pack(seen) or seen
            return seen

    def keep(
        self,
        st: os.stat_result,
        content: Content,
        flags: int,
        xattrs: Xattrs,
        started: int,
    ) -> None:
        """Keep a consistent read of ``st`` (the inode as read) for its other names."""
        left = st.st_nlink - 1
        if left < 1:
            return
        read = LinkedRead(
            st.st_size, st.st_mtime_ns, st.st_ctime_ns, content, flags, xattrs, started, left
        )
        key = _key(st)
        with self._lock:
            if key in self._reads or len(self._reads) < self._most:
                self._reads[key] = _pack(read) or read


def _key(st: os.stat_result) -> int:
    return st.st_dev << 64 | st.st_ino


def _pack(read: LinkedRead) -> bytes | None:
    """``read`` as :data:`_PACKED` and its chunk ids; None where that cannot hold it (xattrs,
    sparse extents, a field out of 64 bits: kept as the object)."""
    content = read.content
    if read.xattrs or content.extents is not None:
        return None
    if any(len(chunk) != _ID for chunk in content.chunks):
        return None
    try:
        head = _PACKED.pack(
            read.size,
            read.mtime_ns,
            read.ctime_ns,
            read.flags,
            read.started,
            content.nread,
            read.left,
        )
    except struct.error:  # a time past 2262, say
        return None
    return b"".join((head, *content.chunks))


def _unpack(packed: bytes) -> LinkedRead:
    size, mtime_ns, ctime_ns, flags, started, nread, left = _PACKED.unpack_from(packed)
    at = _PACKED.size
    chunks = [packed[i : i + _ID] for i in range(at, len(packed), _ID)]
    content = Content(chunks, None, nread)
    return LinkedRead(size, mtime_ns, ctime_ns, content, flags, (), started, left)
