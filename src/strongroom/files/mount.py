"""``strongroom mount``: a files point as a read-only FUSE file system (like ``restic mount``).

mfusepy (a ctypes binding of libfuse 3, nothing to compile) runs libfuse's own loop in the
foreground, single-threaded (the tree and chunk caches need no locks, and one process reads
one chunk at a time anyway).  The mount is ``ro``: the kernel answers every write with
EROFS.  ``default_permissions`` lets the kernel check the backed-up modes and owners, so
``--allow-other`` shows other users only what they could read on the original machine.
libfuse installs its SIGINT, SIGTERM and SIGHUP handlers only over the default action, so
they are reset to it for the mount's lifetime: a signal ends the loop, and libfuse unmounts
before ``fuse_main`` returns.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from strongroom.errors import FilesError, StrongroomError
from strongroom.files.mountfs import MountTree, NotFound, PointFS
from strongroom.files.nodes import DIR, FILE, SYMLINK, Node
from strongroom.files.vaultview import MountVault
from strongroom.vault import RecoveryPoint

FUSE_DEVICE = "/dev/fuse"
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def check_mount_dir(path: str, device: str = FUSE_DEVICE) -> None:
    """Refuse, in one line, a mount point that cannot take the mount: missing, not a
    folder, busy (a mount point already, or not empty: what is in it would be hidden), or
    no FUSE device."""
    try:
        st = os.stat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise FilesError(f"{path}: not a folder")
        mounted = os.path.ismount(path)
        names = os.listdir(path)  # a dead FUSE mount may still stat (cached) but not list
    except FileNotFoundError:
        raise FilesError(f"{path}: no such folder (create it first)") from None
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise FilesError(
                f"{path}: a stale FUSE mount (its process ended): fusermount3 -u {path}"
            ) from None
        raise FilesError(f"{path}: {exc.strerror}") from None
    if mounted:
        raise FilesError(f"{path}: busy (already a mount point)")
    if names:
        raise FilesError(f"{path}: busy (not empty: mount on an empty folder)")
    if not os.path.exists(device):
        raise FilesError(f"no {device}: FUSE is not available here (modprobe fuse)")
    if not os.access(device, os.R_OK | os.W_OK):
        raise FilesError(f"{device}: permission denied (is fuse3 installed, with fusermount3?)")


def _enc(path: str) -> bytes:
    return os.fsencode(path)  # mfusepy decodes paths with surrogateescape


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@contextmanager
def _guard(path: str) -> Iterator[None]:
    """The library's errors as errnos: a missing entry ENOENT, anything else (a damaged
    chunk or filesystem, a locked volume) EIO and one line on stderr; the mount goes on."""
    try:
        yield
    except NotFound:
        raise _oserror(errno.ENOENT) from None
    except StrongroomError as exc:
        print(f"strongroom mount: {path}: {exc}", file=sys.stderr, flush=True)
        raise _oserror(errno.EIO) from None


class FuseOps:
    """The callbacks mfusepy hands libfuse (those not defined here stay unset: ENOSYS)."""

    use_ns = True  # times in ns, as the trees keep them

    def __init__(self, fs: MountTree, on_ready: Callable[[], None]) -> None:
        self.fs = fs
        self.on_ready = on_ready
        self.ready = False
        self._handles = 0

    def _node(self, path: str) -> Node:
        with _guard(path):
            return self.fs.lookup(_enc(path))

    def init(self, path: str) -> None:
        self.ready = True
        self.on_ready()

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        return self.fs.attrs(_enc(path), self._node(path))

    def readdir(self, path: str, fh: int) -> list[tuple[str, dict[str, int], int]]:
        node = self._node(path)
        if node.kind != DIR:
            raise _oserror(errno.ENOTDIR)
        here = _enc(path).rstrip(b"/")
        out = [(".", {"st_mode": stat.S_IFDIR}, 0), ("..", {"st_mode": stat.S_IFDIR}, 0)]
        with _guard(path):
            kids = self.fs.entries(node)
        for name, kid in kids.items():
            attrs = self.fs.attrs(here + b"/" + name, kid)
            out.append((os.fsdecode(name), attrs, 0))
        return out

    def readlink(self, path: str) -> str:
        node = self._node(path)
        if node.kind != SYMLINK or node.target is None:
            raise _oserror(errno.EINVAL)
        return os.fsdecode(node.target)

    def open(self, path: str, flags: int) -> int:
        node = self._node(path)
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise _oserror(errno.EROFS)
        if node.kind != FILE:
            raise _oserror(errno.EINVAL)
        self._handles += 1  # one per open: each close forgets its own state
        return self._handles

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        node = self._node(path)
        with _guard(path):
            return self.fs.read(fh, node, size, offset)

    def release(self, path: str, fh: int) -> int:
        self.fs.forget(fh)
        return 0

    def listxattr(self, path: str) -> list[str]:
        return [name for name, _ in self._node(path).xattrs]

    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        for key, value in self._node(path).xattrs:
            if key == name:
                return value
        raise _oserror(errno.ENODATA)

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}


@contextmanager
def _default_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP at their default action, so libfuse takes them."""
    old = {sig: signal.signal(sig, signal.SIG_DFL) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _fuse() -> Any:
    try:
        import mfusepy
    except (ImportError, OSError) as exc:  # mfusepy raises OSError when libfuse is missing
        raise FilesError(f"cannot load libfuse ({exc}): apt-get install fuse3") from None
    return mfusepy


def mount_point(
    vault: MountVault,
    point: RecoveryPoint,
    mountpoint: str,
    *,
    allow_other: bool = False,
    on_ready: Callable[[], None] = lambda: None,
) -> None:
    """Serve files point ``point`` at ``mountpoint`` (under a shared lock: prune waits)."""
    check_mount_dir(mountpoint)
    with vault.read_lock():
        serve(PointFS(vault, point), mountpoint, point.short_id, allow_other, on_ready)


def serve(
    fs: MountTree,
    mountpoint: str,
    name: str,
    allow_other: bool = False,
    on_ready: Callable[[], None] = lambda: None,
) -> None:
    """Serve ``fs`` at ``mountpoint`` until a signal or ``fusermount3 -u`` ends it."""
    mfusepy = _fuse()
    ops = FuseOps(fs, on_ready)
    options: dict[str, Any] = {
        "foreground": True,
        "nothreads": True,
        "ro": True,
        "default_permissions": True,
        "use_ino": True,
        "fsname": f"strongroom:{name}",
        "subtype": "strongroom",
    }
    if allow_other:
        options["allow_other"] = True
    with _default_signals():
        try:
            mfusepy.FUSE(ops, mountpoint, **options)
        except RuntimeError as exc:  # fuse_main's non-zero status
            if not ops.ready:
                raise FilesError(f"{mountpoint}: the mount failed (libfuse status {exc})") from None
            # ended by a signal: libfuse reports it as an error, but has unmounted
