"""Reading and writing disk images: raw files and block devices directly, every other format
through a private ``qemu-nbd`` and strongroom's NBD client.

Both kinds implement :class:`Disk`: ``size``; ``data_extents`` (the ranges that may hold
non-zero data: SEEK_DATA/SEEK_HOLE for raw files, ``base:allocation`` block status for NBD,
so holes and zero clusters are never read); thread-safe ``read_into``; and, when opened
writable, ``write`` / ``zero`` / ``flush``.  Write errors meaning "disk full" become
``ImageError("no space left on device writing PATH")``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Final, ParamSpec, Protocol, TypeVar

from strongroom.errors import ImageError, NBDError
from strongroom.image.formats import is_lock_message
from strongroom.image.nbd import BASE_ALLOCATION, STATE_DIRTY, STATE_ZERO, NBDClient, QemuNBD
from strongroom.image.nbd.client import ReadCounts
from strongroom.image.nbd.negotiate import Address
from strongroom.image.nbd.protocol import ENOSPC, NBDCommandError
from strongroom.image.nbd.qemu import DIRECT_UNSAFE
from strongroom.image.vhdxmap import vhdx_data_extents
from strongroom.storage.directio import ALIGN, DirectSink, open_direct

__all__ = [
    "DIRECT_UNSAFE",
    "Disk",
    "ExportDisk",
    "NBDDisk",
    "RawDisk",
    "in_use_message",
    "open_disk",
]

P = ParamSpec("P")
R = TypeVar("R")
READ_MODE_RAW: Final = "raw-seek-data"
READ_MODE_NBD: Final = "nbd-block-status"
READ_MODE_EXPORT: Final = "nbd-export"
_FULL_ERRNOS: Final = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_PUNCH_HOLE: Final = 0x02
_KEEP_SIZE: Final = 0x01
_ZERO_STEP: Final = 4 << 20
_WRITE_WINDOW: Final = 8
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]


class Disk(Protocol):
    path: Path
    fmt: str
    size: int
    read_mode: str
    parallel_writes: bool

    def data_extents(self) -> Iterator[tuple[int, int]]: ...
    def read_into(self, offset: int, view: memoryview) -> None: ...
    def write(self, offset: int, data: bytes | memoryview) -> None: ...
    def zero(self, offset: int, length: int) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def in_use_message(path: Path, detail: str) -> str:
    return (
        f"disk image {path} is in use ({detail}): shut the VM down first, "
        "or use --force to write anyway"
    )


def _full(display: Path) -> ImageError:
    return ImageError(f"no space left on device writing {display}")


class RawDisk:
    """A raw image file or block device, read and written with pread/pwrite."""

    fmt = "raw"
    read_mode = READ_MODE_RAW
    parallel_writes = True  # pwrite from any thread

    def __init__(self, path: Path, *, writable: bool = False, display: Path | None = None):
        self.path = path
        self.display = display or path
        try:
            self._fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ImageError(f"disk image not found: {path}") from None
        except OSError as exc:
            raise ImageError(f"cannot open disk image {path}: {exc.strerror}") from None
        st = os.fstat(self._fd)
        self.is_block = stat.S_ISBLK(st.st_mode)
        if not (self.is_block or stat.S_ISREG(st.st_mode)):
            os.close(self._fd)
            raise ImageError(f"{path} is neither a regular file nor a block device")
        self.size = os.lseek(self._fd, 0, os.SEEK_END) if self.is_block else st.st_size
        # One pwrite at a time: writers of one file take its inode lock in turn anyway, and
        # ext4 lets the ones waiting spin on it (restoring 2 GiB from four threads spent
        # 10 s of system time, a fifth of it spinning; one at a time, see docs/image.md)
        self._write_lock = threading.Lock()
        # restored data goes past the page cache (storage/directio.py: 2 GiB of an image
        # restored buffered cost seconds of system time on a VM for the cache's new pages)
        self._direct_fd = open_direct(self._fd) if writable else -1

    def data_extents(self) -> Iterator[tuple[int, int]]:
        if self.is_block:
            yield 0, self.size
            return
        pos = 0
        while pos < self.size:
            try:
                start = os.lseek(self._fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    return
                if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                    yield pos, self.size - pos
                    return
                raise ImageError(f"cannot map {self.path}: {exc.strerror}") from None
            end = min(os.lseek(self._fd, start, os.SEEK_HOLE), self.size)
            if end > start:
                yield start, end - start
            pos = end

    def read_into(self, offset: int, view: memoryview) -> None:
        got, size = 0, len(view)
        while got < size:
            try:
                n = os.preadv(self._fd, [view[got:]], offset + got)
            except OSError as exc:
                raise ImageError(f"cannot read {self.path}: {exc.strerror}") from None
            if n == 0:
                raise ImageError(f"{self.path} ended at {offset + got}, expected {size} more")
            got += n

    def write(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        done = 0
        with self._write_lock:
            try:
                if self._direct_fd >= 0 and len(view) >= ALIGN:
                    sink = DirectSink(self._fd, self._direct_fd)
                    sink.write(view, offset)
                    sink.flush()
                    return
                while done < len(view):
                    done += os.pwrite(self._fd, view[done:], offset + done)
            except OSError as exc:
                raise self._write_error(exc) from None

    def _write_error(self, exc: OSError) -> ImageError:
        if exc.errno in _FULL_ERRNOS:
            return _full(self.display)
        return ImageError(f"cannot write {self.display}: {exc.strerror}")

    def zero(self, offset: int, length: int) -> None:
        """Punch a hole (reads as zeros, frees the space); write zeros where that fails."""
        if _LIBC.fallocate(self._fd, _PUNCH_HOLE | _KEEP_SIZE, offset, length) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise self._write_error(OSError(err, os.strerror(err)))
        zeros = bytes(min(length, _ZERO_STEP))
        for pos in range(offset, offset + length, len(zeros)):
            self.write(pos, memoryview(zeros)[: min(len(zeros), offset + length - pos)])

    def flush(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise self._write_error(exc) from None

    def close(self) -> None:
        if self._direct_fd >= 0:
            os.close(self._direct_fd)
            self._direct_fd = -1
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


READ_MODE_VHDX: Final = "vhdx-bat"  # data blocks from a vhdx's own allocation table


class _NBDReads:
    """The reads both NBD-backed disks share: plain, and submitted for read-ahead
    (``image/readahead.py``); a subclass names its errors with ``_read_error``."""

    path: Path
    _client: NBDClient

    def _read_error(self, exc: NBDError) -> ImageError:
        raise NotImplementedError

    def read_into(self, offset: int, view: memoryview) -> None:
        try:
            self._client.read_into(offset, view)
        except NBDError as exc:
            raise self._read_error(exc) from None

    @property
    def max_request(self) -> int:
        return self._client.max_request

    @property
    def read_counts(self) -> ReadCounts:
        """The READs sent so far (count, bytes, largest, most in flight)."""
        return self._client.reads

    def submit_read(self, offset: int, view: memoryview) -> Future[int]:
        try:
            return self._client.submit_read(offset, len(view), view)
        except NBDError as exc:
            raise self._read_error(exc) from None

    def wait_read(self, future: Future[int]) -> None:
        try:
            future.result()
        except NBDError as exc:
            raise self._read_error(exc) from None


class NBDDisk(_NBDReads):
    """Any image qemu can open, served by a private qemu-nbd.

    Writes are pipelined: up to a window of WRITE requests stay in flight and ``flush``
    waits for them.  Writable exports run with ``--detect-zeroes=unmap`` so zeroing keeps
    the image sparse.
    """

    read_mode = READ_MODE_NBD
    parallel_writes = False  # one writer thread; requests pipelined

    def __init__(
        self,
        path: Path,
        fmt: str,
        *,
        writable: bool = False,
        locking: bool = True,
        display: Path | None = None,
        bitmap: str | None = None,
        cache: str = "writeback",
    ):
        self.path, self.fmt = path, fmt
        self.display = display or path
        self.bitmap = bitmap
        self._server = QemuNBD(
            path, fmt=fmt, writable=writable, locking=locking, bitmap=bitmap, cache=cache
        )
        try:
            self._server.start()
        except ImageError as exc:
            raise _start_error(path, fmt, str(exc)) from None
        try:
            self._client: NBDClient = self._server.connect(max_in_flight=16)
        except BaseException:
            self._server.stop()
            raise
        self.size = self._client.size
        self._writes: deque[tuple[Future[int], bytes | memoryview]] = deque()

    def data_extents(self) -> Iterator[tuple[int, int]]:
        if self.fmt == "vhdx":  # qemu's vhdx has no block status: it calls everything data
            found = vhdx_data_extents(self.path, self.size)
            if found is not None:
                self.read_mode = READ_MODE_VHDX
                return iter(found)
        return merged_extents(self._client, BASE_ALLOCATION, lambda flags: not flags & STATE_ZERO)

    def dirty_extents(self) -> Iterator[tuple[int, int]]:
        """The extents the persistent bitmap (``bitmap=``) marks dirty."""
        context = f"qemu:dirty-bitmap:{self.bitmap}"
        return merged_extents(self._client, context, lambda flags: bool(flags & STATE_DIRTY))

    def _read_error(self, exc: NBDError) -> ImageError:
        return ImageError(f"cannot read {self.path}: {exc}")

    def write(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        step = self._client.max_request
        for pos in range(0, len(view), step):
            piece = view[pos : pos + step]
            self._writes.append((self._call(self._client.submit_write, offset + pos, piece), piece))
            while len(self._writes) > _WRITE_WINDOW:
                self._wait(self._writes.popleft()[0])

    def zero(self, offset: int, length: int) -> None:
        self._call(self._client.write_zeroes, offset, length)

    def flush(self) -> None:
        while self._writes:
            self._wait(self._writes.popleft()[0])
        if self._client.can_flush:
            self._call(self._client.flush)

    def _wait(self, fut: Future[int]) -> None:
        try:
            fut.result()
        except NBDError as exc:
            raise self._write_error(exc) from None

    def _call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except NBDError as exc:
            raise self._write_error(exc) from None

    def _write_error(self, exc: NBDError) -> ImageError:
        if isinstance(exc, NBDCommandError) and exc.error == ENOSPC:
            return _full(self.display)
        return ImageError(f"cannot write {self.display}: {exc}")

    def close(self) -> None:
        try:
            while self._writes:
                fut, _ = self._writes.popleft()
                fut.exception()
            self._client.close()
        finally:
            self._server.stop()


def merged_extents(
    client: NBDClient, context: str, keep: Callable[[int], bool]
) -> Iterator[tuple[int, int]]:
    """(offset, length) of the runs of extents whose flags ``keep`` accepts, merged."""
    start = end = -1
    for ext in client.extents(context):
        if not keep(ext.flags):
            continue
        if ext.offset == end:
            end = ext.end
            continue
        if end > start:
            yield start, end - start
        start, end = ext.offset, ext.end
    if end > start:
        yield start, end - start


class ExportDisk(_NBDReads):
    """A read-only export someone else serves (libvirt's pull-mode backup): the export
    ``name`` at ``address``, with ``base:allocation`` and optionally a dirty bitmap."""

    fmt = "raw"
    read_mode = READ_MODE_EXPORT
    parallel_writes = False

    def __init__(self, address: Address, name: str, *, bitmap: str | None = None) -> None:
        self.path = Path(f"nbd:{name}")
        self.bitmap = bitmap
        contexts = [BASE_ALLOCATION] + ([f"qemu:dirty-bitmap:{bitmap}"] if bitmap else [])
        try:
            self._client = NBDClient(address, name, meta_contexts=contexts, max_in_flight=16)
        except NBDError as exc:
            raise ImageError(f"cannot open NBD export {name!r}: {exc}") from None
        self.size = self._client.size

    def data_extents(self) -> Iterator[tuple[int, int]]:
        if BASE_ALLOCATION not in self._client.meta_contexts:
            return iter([(0, self.size)])
        return merged_extents(self._client, BASE_ALLOCATION, lambda flags: not flags & STATE_ZERO)

    def dirty_extents(self) -> Iterator[tuple[int, int]]:
        context = f"qemu:dirty-bitmap:{self.bitmap}"
        if context not in self._client.meta_contexts:
            raise ImageError(f"the NBD export {self.path.name!r} offers no {context}")
        return merged_extents(self._client, context, lambda flags: bool(flags & STATE_DIRTY))

    def _read_error(self, exc: NBDError) -> ImageError:
        return ImageError(f"cannot read NBD export {self.path.name!r}: {exc}")

    def write(self, offset: int, data: bytes | memoryview) -> None:
        raise ImageError("NBD backup exports are read-only")

    def zero(self, offset: int, length: int) -> None:
        raise ImageError("NBD backup exports are read-only")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._client.close()


def _start_error(path: Path, fmt: str, message: str) -> ImageError:
    if is_lock_message(message):
        return ImageError(in_use_message(path, "a qemu process holds its lock"))
    detail = message.split(": ", 1)[-1] if "qemu-nbd exited" in message else message
    return ImageError(f"cannot open {fmt} disk image {path}: {detail.strip()}")


def open_disk(
    path: Path,
    fmt: str,
    *,
    writable: bool = False,
    direct_raw: bool = True,
    locking: bool = True,
    display: Path | None = None,
    cache: str = "writeback",
) -> Disk:
    """A raw file or block device directly (``direct_raw``), anything else via qemu-nbd
    (with qemu's ``cache`` mode: ``unsafe`` ignores flushes, for a new image the caller
    fsyncs itself once qemu-nbd has written everything out)."""
    if fmt == "raw" and direct_raw:
        return RawDisk(path, writable=writable, display=display)
    return NBDDisk(path, fmt, writable=writable, locking=locking, display=display, cache=cache)
