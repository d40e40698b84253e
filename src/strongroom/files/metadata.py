"""Capturing metadata from the file system and applying it back, in the right order.

Apply order (for each entry): xattrs and POSIX ACLs, then ownership (root only, which clears
setuid/setgid and ``security.capability``, so that xattr is set again), then the mode, then the
times.  Directories are done after their children (the restore calls this post-order).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import os
import pwd
import stat
import struct
from collections.abc import Callable

from strongroom.files.nodes import (
    BLOCKDEV,
    CHARDEV,
    DIR,
    FIFO,
    FILE,
    SYMLINK,
    Node,
    Xattrs,
)
from strongroom.records import dataclass

_KIND_BY_IFMT = {
    stat.S_IFREG: FILE,
    stat.S_IFDIR: DIR,
    stat.S_IFLNK: SYMLINK,
    stat.S_IFIFO: FIFO,
    stat.S_IFCHR: CHARDEV,
    stat.S_IFBLK: BLOCKDEV,
}
_IFMT_BY_KIND = {v: k for k, v in _KIND_BY_IFMT.items()}
_NO_XATTRS = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA})
_CAPABILITY = "security.capability"
# Never removed from a restored entry even when the point does not list them: the system sets
# them (SELinux labels) and removing them usually fails or does harm.
_KEEP_UNLISTED = ("security.selinux",)
PERMS = 0o7777

# Inode flags (``chattr``/``lsattr``), read and set with FS_IOC_GETFLAGS/SETFLAGS (the kernel
# passes an int despite the ioctls' "long" in their numbers).
_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
FL_SECRM, FL_UNRM, FL_COMPR, FL_SYNC = 0x1, 0x2, 0x4, 0x8
FL_IMMUTABLE, FL_APPEND, FL_NODUMP, FL_NOATIME = 0x10, 0x20, 0x40, 0x80
FL_JOURNAL_DATA, FL_NOTAIL, FL_DIRSYNC, FL_TOPDIR = 0x4000, 0x8000, 0x10000, 0x20000
FL_NOCOW, FL_PROJINHERIT = 0x800000, 0x20000000
# The flags chattr sets (s u c S i a d A j t D T C P); the rest are the file system's own
# state (extents, inline data, encryption, verity, casefold...) and are neither stored nor set.
USER_FLAGS = (
    FL_SECRM
    | FL_UNRM
    | FL_COMPR
    | FL_SYNC
    | FL_IMMUTABLE
    | FL_APPEND
    | FL_NODUMP
    | FL_NOATIME
    | FL_JOURNAL_DATA
    | FL_NOTAIL
    | FL_DIRSYNC
    | FL_TOPDIR
    | FL_NOCOW
    | FL_PROJINHERIT
)
# Set last: nothing (content, metadata, rename, link) can change the entry after them.
FL_LOCKING = FL_IMMUTABLE | FL_APPEND
_NO_FLAGS = frozenset({errno.ENOTTY, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS})
_FLAG_OPEN = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC

Issue = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Fresh:
    """What a regular file a restore has just created in its private staging folder has
    already: its owner, and its mode when it was created with :func:`create_mode` under this
    umask.  :func:`apply_metadata` skips the ``fchown`` and ``fchmod`` that would change
    nothing: two of the nine system calls of each small file restored (three with
    ``bare``: the ``flistxattr``)."""

    uid: int
    gid: int
    umask: int
    # The folder has no xattrs at all, so neither has a file created in it (no ACL to
    # inherit, no security module labelling it, no property such as btrfs's compression
    # passed down): its xattrs need not be listed before they are set.
    bare: bool = False
    # Made with create_mode(node): a file.  A folder the restore made in its staged tree
    # (0700, its own metadata applied last) has the owner and the bare xattrs, not the mode.
    node_mode: bool = True


def create_mode(node: Node) -> int:
    """The mode a regular file's temporary copy is created with (in the restore's private
    staging folder): its own permissions when they let the owner read and write, since a big
    file is opened again for direct writes; otherwise 0600, changed after."""
    mode = node.mode
    return mode if mode <= 0o777 and mode & 0o600 == 0o600 else 0o600


def process_umask() -> int | None:
    """This process's umask (``/proc/self/status``; None where the kernel does not say):
    reading it with ``os.umask`` would change it for a moment under other threads."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def kind_of(mode: int) -> str | None:
    """Node type of an ``st_mode``; None for sockets and anything unknown."""
    return _KIND_BY_IFMT.get(stat.S_IFMT(mode))


def ifmt_of(kind: str) -> int:
    return _IFMT_BY_KIND[kind]


class Names:
    """uid/gid to name lookups, cached (the name databases are slow to ask per file)."""

    def __init__(self) -> None:
        self._users: dict[int, str] = {}
        self._groups: dict[int, str] = {}

    def user(self, uid: int) -> str:
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = ""
            self._users[uid] = name
        return name

    def group(self, gid: int) -> str:
        name = self._groups.get(gid)
        if name is None:
            try:
                name = grp.getgrgid(gid).gr_name
            except KeyError:
                name = ""
            self._groups[gid] = name
        return name


def node_from_stat(name: bytes, st: os.stat_result, names: Names) -> Node | None:
    """A node with the stat fields filled in (no xattrs, content or subtree); None if skipped."""
    kind = kind_of(st.st_mode)
    if kind is None:
        return None
    node = Node(
        name=name,
        kind=kind,
        mode=st.st_mode & PERMS,
        uid=st.st_uid,
        gid=st.st_gid,
        user=names.user(st.st_uid),
        group=names.group(st.st_gid),
        mtime_ns=st.st_mtime_ns,
        atime_ns=st.st_atime_ns,
    )
    if kind == FILE:
        node.size = st.st_size
        if st.st_nlink > 1:
            node.link = f"{st.st_dev}:{st.st_ino}"
    elif kind in (CHARDEV, BLOCKDEV):
        node.rdev = st.st_rdev
    return node


def read_xattrs(path: bytes | int) -> Xattrs:
    """Every xattr the caller may read, sorted by name; raises OSError on a real failure."""
    follow = isinstance(path, int)
    try:
        names = os.listxattr(path, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return ()
        raise
    if not names:
        return ()
    found: list[tuple[str, bytes]] = []
    for key in sorted(names):
        try:
            found.append((key, os.getxattr(path, key, follow_symlinks=follow)))
        except OSError as exc:
            if exc.errno == errno.ENODATA:  # removed between list and get
                continue
            raise
    return tuple(found)


def read_flags(fd: int) -> int:
    """The user-settable inode flags of an open file or directory; 0 where the file system
    has none (ENOTTY, EOPNOTSUPP)."""
    try:
        raw = fcntl.ioctl(fd, _FS_IOC_GETFLAGS, b"\0\0\0\0")
    except OSError as exc:
        if exc.errno in _NO_FLAGS:
            return 0
        raise
    return int(struct.unpack("=i", raw)[0]) & USER_FLAGS


def xattrs_listed(pairs: list[tuple[bytes, bytes]], err: int) -> Xattrs:
    """:func:`read_xattrs` from what a compiled read listed (``_smallread.c``): the pairs in
    the file system's order, or the errno that failed them."""
    if not pairs and not err:
        return ()  # most files
    if err:
        if err in _NO_XATTRS:
            return ()
        raise OSError(err, os.strerror(err))
    return tuple(sorted((os.fsdecode(name), value) for name, value in pairs))


def flags_read(raw: int, err: int) -> int:
    """:func:`read_flags` from what a compiled read got: the ioctl's value or its errno."""
    if err:
        if err in _NO_FLAGS:
            return 0
        raise OSError(err, os.strerror(err))
    return raw & USER_FLAGS


def read_flags_at(path: bytes) -> int:
    """:func:`read_flags` of a path (not followed; opening it does not block on a FIFO)."""
    fd = os.open(path, _FLAG_OPEN)
    try:
        return read_flags(fd)
    finally:
        os.close(fd)


def set_flags(path: bytes, flags: int) -> None:
    """Set the user-settable flags of a file or directory to ``flags`` (the file system's own
    flags are kept); raises OSError (EPERM without CAP_LINUX_IMMUTABLE, ENOTTY/EOPNOTSUPP
    where unsupported)."""
    fd = os.open(path, _FLAG_OPEN)
    try:
        raw = fcntl.ioctl(fd, _FS_IOC_GETFLAGS, b"\0\0\0\0")
        current = int(struct.unpack("=i", raw)[0])
        wanted = (current & ~USER_FLAGS) | (flags & USER_FLAGS)
        if wanted != current:
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, struct.pack("=i", _signed(wanted)))
    finally:
        os.close(fd)


def _signed(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def flags_unsupported(exc: OSError) -> bool:
    return exc.errno in _NO_FLAGS


def data_extents(fd: int, size: int) -> list[tuple[int, int]] | None:
    """The data extents of a file with holes (SEEK_DATA/SEEK_HOLE); None if it has none."""
    extents: list[tuple[int, int]] = []
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break
            if exc.errno in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                return None
            raise
        if start >= size:
            break
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        extents.append((start, end - start))
        offset = end
    if extents == [(0, size)]:
        return None
    return extents


class ExtentReader:
    """``readinto`` over a file's data extents, back to back."""

    def __init__(self, fd: int, extents: list[tuple[int, int]]) -> None:
        self._fd = fd
        self._extents = extents
        self._i = 0
        self._done = 0  # bytes already read from extent i

    def readinto(self, buffer: memoryview, /) -> int:
        while self._i < len(self._extents):
            offset, length = self._extents[self._i]
            left = length - self._done
            if left <= 0:
                self._i, self._done = self._i + 1, 0
                continue
            n = os.preadv(self._fd, [buffer[:left]], offset + self._done)
            if n == 0:  # the file shrank under us: the re-stat reports it
                self._i, self._done = self._i + 1, 0
                continue
            self._done += n
            return n
        return 0


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _set_xattrs(target: bytes | int, node: Node, issue: Issue, bare: bool) -> bool:
    """The node's xattrs, and no others; True if the entry had none and got none.  ``bare``:
    the entry is known to have none yet (see :class:`Fresh`)."""
    follow = isinstance(target, int)
    wanted = dict(node.xattrs)
    present: list[str] = []
    if not bare:
        with contextlib.suppress(OSError):
            present = os.listxattr(target, follow_symlinks=follow)
    for key in present:
        if key not in wanted and key not in _KEEP_UNLISTED:
            try:
                os.removexattr(target, key, follow_symlinks=follow)
            except OSError as exc:
                if exc.errno not in _NO_XATTRS:
                    issue(f"cannot remove xattr {key}: {_describe(exc)}")
    for key, value in node.xattrs:
        try:
            os.setxattr(target, key, value, follow_symlinks=follow)
        except OSError as exc:
            issue(f"cannot set xattr {key}: {_describe(exc)}")
    return not present and not node.xattrs


def _set_owner(target: bytes | int, node: Node, issue: Issue) -> None:
    try:
        if isinstance(target, int):
            os.fchown(target, node.uid, node.gid)
        else:
            os.chown(target, node.uid, node.gid, follow_symlinks=False)
    except OSError as exc:
        issue(f"cannot set owner {node.uid}:{node.gid}: {_describe(exc)}")
        return
    for key, value in node.xattrs:
        if key == _CAPABILITY:  # chown clears file capabilities
            try:
                os.setxattr(target, key, value, follow_symlinks=isinstance(target, int))
            except OSError as exc:
                issue(f"cannot set xattr {key}: {_describe(exc)}")


def apply_metadata(
    target: bytes | int, node: Node, *, as_root: bool, issue: Issue, fresh: Fresh | None = None
) -> None:
    """Apply ``node``'s metadata to a path (not followed) or an open descriptor; ``fresh``:
    what a file just created has already (see :class:`Fresh`)."""
    bare = False
    if node.xattrs or node.kind != SYMLINK:
        bare = _set_xattrs(target, node, issue, fresh is not None and fresh.bare)
    if as_root and (fresh is None or (fresh.uid, fresh.gid) != (node.uid, node.gid)):
        _set_owner(target, node, issue)
    # An ACL, set or removed, moves the mode's group bits: only a file without xattrs keeps
    # the mode it was created with.
    kept = (
        fresh is not None
        and fresh.node_mode
        and bare
        and create_mode(node) & ~fresh.umask == node.mode
    )
    if node.kind != SYMLINK and not kept:
        try:
            if isinstance(target, int):
                os.fchmod(target, node.mode)
            else:
                os.chmod(target, node.mode)
        except OSError as exc:
            issue(f"cannot set mode {node.mode:o}: {_describe(exc)}")
    try:
        if isinstance(target, int):
            os.utime(target, ns=(node.atime_ns, node.mtime_ns))
        else:
            os.utime(target, ns=(node.atime_ns, node.mtime_ns), follow_symlinks=False)
    except OSError as exc:
        issue(f"cannot set times: {_describe(exc)}")


def mode_string(node: Node) -> str:
    """``ls -l`` style type and permission string."""
    return stat.filemode(ifmt_of(node.kind) | node.mode)
