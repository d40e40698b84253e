"""A backend that keeps each object as a file under a root folder.

Writes are durable and atomic: the bytes go to a temporary file in the object's own folder, which
is fsynced, renamed to the final name and then the folder itself is fsynced.  A crash therefore
leaves either the old state or the complete new object, plus at worst a stray ``.tmp-*`` file that
:meth:`LocalBackend.list` ignores and :meth:`LocalBackend.cleanup_temp` removes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as stat_mod
import time
from collections.abc import Iterator
from pathlib import Path

from strongroom import failpoints
from strongroom.errors import (
    ObjectNotFound,
    PermanentStorageError,
    ReadOnlyStorage,
    StorageError,
    StorageFull,
    TransientStorageError,
)
from strongroom.storage import directio
from strongroom.storage.backend import BackendCapabilities, ObjectInfo
from strongroom.storage.localstream import LocalStream
from strongroom.storage.names import (
    TEMP_PREFIX,
    check_name,
    check_prefix,
    check_range,
    split_prefix,
)
from strongroom.storage.reserve import (
    RESERVE_FRACTION,
    RESERVE_MAX,
    RESERVE_NAME,
    RESERVE_STEPS,
)

# Errors that a later attempt may not see again (I/O hiccups, NFS, signals, busy resources).
_TRANSIENT_ERRNOS = frozenset(
    {
        errno.EIO,
        errno.EAGAIN,
        errno.EINTR,
        errno.EBUSY,
        errno.ETIMEDOUT,
        errno.ESTALE,
        errno.ECONNRESET,
        errno.ENOLCK,
        errno.ENOMEM,
    }
)
# Errors that mean "no object by that name" when reading: a file, folder or path component is
# missing, or the name is a folder (objects are only regular files).
_MISSING_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR})
# Errors that mean "this storage takes no writes": a read-only mount, or no write permission
# (a denied read is a different problem and stays a plain permanent error).
_READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_READ_ACTIONS = frozenset({"reading", "listing"})

_OPEN_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_OPEN_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC


def os_error_to_storage(
    err: OSError, action: str, name: str, where: str, *, reading: bool
) -> StorageError:
    """Classify an OSError as not-found, transient or permanent, with a one-line message.

    ``action`` is a verb phrase such as ``"writing"``; ``reading`` says whether a missing path
    means the object is absent (for writes it means a folder vanished, which is permanent).
    Errors not known to pass by themselves (disk full, quota, permissions, read-only file
    system, name too long, ...) are permanent; a refused write is :class:`ReadOnlyStorage`
    and a full disk :class:`StorageFull`, so callers can tell them apart without errnos.
    """
    code = err.errno
    reason = (os.strerror(code) if code is not None else str(err)).lower()
    message = f"{reason} while {action} {name} in {where}"
    if reading and code in _MISSING_ERRNOS:
        return ObjectNotFound(f"object {name} not found in {where}", name=name)
    if code in _TRANSIENT_ERRNOS:
        return TransientStorageError(message, name=name)
    if code == errno.EROFS or (code in _READ_ONLY_ERRNOS and action not in _READ_ACTIONS):
        return ReadOnlyStorage(message, name=name)
    if code in _FULL_ERRNOS:
        return StorageFull(message, name=name)
    return PermanentStorageError(message, name=name)


class LocalBackend:
    """Objects as files under ``root``; see the module docstring for the durability argument."""

    def __init__(self, root: Path) -> None:
        # absolute, so creating a relative root ("vault") has a parent to make it in
        self._root = Path(os.path.abspath(root))
        self._root_str = os.fspath(self._root)
        # Folders (relative, '' is the root) already known to exist durably, so a put into a
        # known folder costs no extra stat or fsync.  Only ever grows; set ops are GIL-atomic.
        self._known_dirs: set[str] = set()

    @property
    def root(self) -> Path:
        """The folder holding the objects."""
        return self._root

    @property
    def capabilities(self) -> BackendCapabilities:
        # A local read costs its bytes, not a round trip: shorter spans waste less, and two
        # reading threads keep two cores busy (more only contend for the interpreter lock);
        # one uploader suffices for a local write (and each holds a pack buffer).
        return BackendCapabilities(
            local_root=self._root, range_span=256 << 10, read_workers=2, upload_workers=1
        )

    def describe(self) -> str:
        return self._root_str

    def close(self) -> None:
        """Nothing to release: every call opens and closes its own descriptors."""

    def __repr__(self) -> str:
        return f"LocalBackend({self._root_str!r})"

    def _path(self, name: str) -> str:
        return os.path.join(self._root_str, check_name(name))

    def _error(self, err: OSError, action: str, name: str, *, reading: bool) -> StorageError:
        return os_error_to_storage(err, action, name, self._root_str, reading=reading)

    # --- reading ---------------------------------------------------------------------------

    def get(self, name: str) -> bytes:
        path = self._path(name)
        try:
            with open(path, "rb", buffering=0) as f:
                return f.readall()
        except OSError as e:
            raise self._error(e, "reading", name, reading=True) from e

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset``; empty when ``offset`` is at or past the end."""
        path = self._path(name)
        check_range(name, offset, length)
        try:
            fd = os.open(path, _OPEN_READ_FLAGS)
            try:
                return _pread_all(fd, offset, length)
            finally:
                os.close(fd)
        except OSError as e:
            raise self._error(e, "reading", name, reading=True) from e

    def stat(self, name: str) -> ObjectInfo:
        path = self._path(name)
        try:
            st = os.stat(path)
        except OSError as e:
            raise self._error(e, "reading", name, reading=True) from e
        if not stat_mod.S_ISREG(st.st_mode):
            raise ObjectNotFound(f"object {name} not found in {self._root_str}", name=name)
        return ObjectInfo(name, st.st_size, st.st_mtime)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Walk only the folder the prefix points into, so ``data/ab`` never reads ``index/``."""
        check_prefix(prefix)
        folder, partial = split_prefix(prefix)
        return self._walk(folder, partial)

    def _walk(self, folder: str, partial: str) -> Iterator[ObjectInfo]:
        base = os.path.join(self._root_str, folder) if folder else self._root_str
        try:
            entries = os.scandir(base)
        except OSError as e:
            if e.errno in _MISSING_ERRNOS:  # nothing stored there (yet), or removed meanwhile
                return
            raise self._error(e, "listing", folder or "/", reading=False) from e
        with entries:
            for entry in entries:
                if entry.name.startswith(TEMP_PREFIX) or not entry.name.startswith(partial):
                    continue
                if not folder and entry.name == RESERVE_NAME:
                    continue  # space held for prune (storage/reserve.py), no object
                rel = f"{folder}/{entry.name}" if folder else entry.name
                try:
                    if entry.is_dir():
                        yield from self._walk(rel, "")
                    elif entry.is_file():
                        st = entry.stat()
                        yield ObjectInfo(rel, st.st_size, st.st_mtime)
                except FileNotFoundError:
                    continue  # deleted while we walked: it is simply not listed
                except OSError as e:
                    raise self._error(e, "listing", rel, reading=False) from e

    # --- writing ---------------------------------------------------------------------------

    def put(self, name: str, data: bytes | bytearray | memoryview) -> None:
        check_name(name)
        folder = name.rpartition("/")[0]
        try:
            self._ensure_folder(folder)
            try:
                self._write_atomically(folder, name, data)
            except FileNotFoundError:
                # The folder was removed behind our back since we cached it: make it again.
                self._known_dirs.discard(folder)
                self._ensure_folder(folder)
                self._write_atomically(folder, name, data)
        except OSError as e:
            raise self._error(e, "writing", name, reading=False) from e

    def _write_atomically(
        self, folder: str, name: str, data: bytes | bytearray | memoryview
    ) -> None:
        folder_path = os.path.join(self._root_str, folder) if folder else self._root_str
        tmp = os.path.join(folder_path, TEMP_PREFIX + os.urandom(8).hex())
        fd = os.open(tmp, _OPEN_WRITE_FLAGS, 0o644)
        try:
            try:
                if name.startswith("data/"):
                    _write_half_then_failpoint(fd, data)
                directio.write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, os.path.join(self._root_str, name))
        except BaseException:
            _unlink_quietly(tmp)
            raise
        fsync_dir(folder_path)

    def open_stream(self, folder: str) -> LocalStream:
        """A large object written piece by piece, its temporary file in ``folder``; it gets
        its name (any folder) on commit.  See :mod:`strongroom.storage.localstream`."""
        check_name(folder)
        try:
            self._ensure_folder(folder)
        except OSError as e:
            raise self._error(e, "writing", folder, reading=False) from e

        def translate(err: OSError, action: str) -> Exception:
            return self._error(err, action, folder, reading=False)

        return LocalStream(os.path.join(self._root_str, folder), self._publish, translate)

    def _publish(self, tmp: str, name: str) -> None:
        check_name(name)
        folder = name.rpartition("/")[0]
        self._ensure_folder(folder)
        os.rename(tmp, os.path.join(self._root_str, name))
        fsync_dir(os.path.join(self._root_str, folder) if folder else self._root_str)

    def _ensure_folder(self, folder: str) -> None:
        """``mkdir -p`` the folder, fsyncing the parent of every folder it creates."""
        if folder in self._known_dirs:
            return
        path = os.path.join(self._root_str, folder) if folder else self._root_str
        missing: list[str] = []
        while not os.path.isdir(path):
            missing.append(path)
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
        for new in reversed(missing):
            try:
                os.mkdir(new)
            except FileExistsError:
                if not os.path.isdir(new):
                    raise
                continue  # another thread made it; that thread fsyncs its parent
            fsync_dir(os.path.dirname(new))
        self._known_dirs.add(folder)

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            os.unlink(path)
            fsync_dir(os.path.dirname(path))
        except OSError as e:
            raise self._error(e, "deleting", name, reading=True) from e

    # --- maintenance -----------------------------------------------------------------------

    def cleanup_temp(self, older_than_seconds: float = 3600.0) -> int:
        """Remove temporary files older than the given age left by crashed writers.

        Keep the age well above the longest single ``put``: a younger temporary file may belong
        to a writer that is still running.  Returns how many files were removed.
        """
        cutoff = time.time() - older_than_seconds
        removed = 0
        for path in self._temp_files(self._root_str):
            try:
                if os.stat(path).st_mtime <= cutoff:
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:
                continue  # renamed by its writer or removed by another cleanup
            except OSError as e:
                raise self._error(e, "removing temporary file", path, reading=False) from e
        return removed

    # --- space reserve (storage/reserve.py) ------------------------------------------------

    def keep_reserve(self) -> int:
        """Grow ``.reserve`` to its full size, or as far as free space allows; its size now.

        Best effort: a vault that cannot be written (read-only, gone) simply has no reserve.
        """
        try:
            want = self._reserve_target()
            fd = os.open(self._reserve_path(), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return 0
        try:
            return _allocate(fd, want)
        finally:
            os.close(fd)

    def release_reserve(self, keep: float = 0.0) -> int:
        """Shrink ``.reserve`` by a step, not below ``keep`` of its full size; bytes freed."""
        try:
            target = self._reserve_target()
            size = os.stat(self._reserve_path()).st_size
            left = max(int(target * keep), size - max(target // RESERVE_STEPS, 1))
            if left >= size:
                return 0
            os.truncate(self._reserve_path(), left)
        except OSError:
            return 0
        return size - left

    def _reserve_path(self) -> str:
        return os.path.join(self._root_str, RESERVE_NAME)

    def _reserve_target(self) -> int:
        fs = os.statvfs(self._root_str)
        return min(RESERVE_MAX, fs.f_blocks * fs.f_frsize // RESERVE_FRACTION)

    def _temp_files(self, base: str) -> Iterator[str]:
        try:
            with os.scandir(base) as entries:
                found = list(entries)
        except FileNotFoundError:
            return
        for entry in found:
            if entry.is_dir(follow_symlinks=False):
                yield from self._temp_files(entry.path)
            elif entry.name.startswith(TEMP_PREFIX):
                yield entry.path


def _write_half_then_failpoint(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Crash tests: with the ``pack-write`` failpoint set, die with half a pack on disk."""
    if os.environ.get(failpoints.ENV, "").startswith("pack-write"):
        view = memoryview(data).cast("B")
        directio.write_all(fd, view[: len(view) // 2])
        os.fsync(fd)
        failpoints.hit("pack-write")
        os.lseek(fd, 0, os.SEEK_SET)


def _allocate(fd: int, want: int) -> int:
    """Allocate ``want`` bytes to ``fd``, or the most that fits (halving); the size held."""
    size = os.fstat(fd).st_size
    if os.fstat(fd).st_blocks * 512 >= want:
        return size
    step = want
    while step >= 1 << 16:
        try:
            os.posix_fallocate(fd, 0, step)
            return os.fstat(fd).st_size
        except OSError:
            os.ftruncate(fd, size)  # give back what a failed attempt allocated past the end
            step //= 2
    return size


def _pread_all(fd: int, offset: int, length: int) -> bytes:
    parts: list[bytes] = []
    while length > 0:
        part = os.pread(fd, length, offset)
        if not part:
            break  # end of file: the range is cut short, as the protocol allows
        parts.append(part)
        offset += len(part)
        length -= len(part)
    return b"".join(parts)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a folder's entries durable (a new or renamed file in it survives a crash)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):  # the original error is the one worth reporting
        os.unlink(path)
