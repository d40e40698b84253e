"""An object written piece by piece into a local temporary file, named when complete.

Packs are the only large objects: streaming them to disk as they fill keeps a writer's memory
to a few MiB per pack instead of the whole pack (restic writes packs to temporary files for the
same reason).  The temporary file sits in a folder of the vault, so ``cleanup_temp`` finds it
after a crash; :meth:`LocalStream.commit` makes it durable (fsync), gives it its final name
(rename) and fsyncs the folder it lands in, exactly as ``LocalBackend.put`` does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from strongroom import failpoints
from strongroom.storage import directio
from strongroom.storage.names import TEMP_PREFIX

__all__ = ["LocalStream"]

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC

# (temporary path, final object name): renames it into place durably
Publish = Callable[[str, str], None]
# (error, what was being done): the backend's StorageError for it
Translate = Callable[[OSError, str], Exception]


class LocalStream:
    """Append-only bytes that become an object on :meth:`commit`; use from one thread at a time.

    Every :meth:`write` but the last must be a multiple of :data:`directio.ALIGN` bytes, so the
    file offset stays aligned and page-aligned buffers go to disk without the page cache.
    """

    def __init__(self, folder_path: str, publish: Publish, translate: Translate) -> None:
        self._publish, self._translate = publish, translate
        self.path = os.path.join(folder_path, TEMP_PREFIX + os.urandom(8).hex())
        self.size = 0
        try:
            self._fd: int | None = os.open(self.path, _OPEN_FLAGS, 0o644)
        except OSError as e:
            raise self._translate(e, "creating") from e

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._fd is None:
            raise ValueError("stream is closed")
        try:
            directio.write_all(self._fd, data)
        except OSError as e:
            self.abort()
            raise self._translate(e, "writing") from e
        self.size += len(memoryview(data))

    def commit(self, name: str) -> None:
        """Make the bytes durable under ``name``; on failure nothing is left behind."""
        fd = self._fd
        if fd is None:
            raise ValueError("stream is closed")
        try:
            os.fsync(fd)
            failpoints.hit("pack-write")  # crash tests: a complete pack never named
            os.close(fd)
            self._fd = None
            self._publish(self.path, name)
        except BaseException as e:
            self.abort()
            if isinstance(e, OSError):
                raise self._translate(e, "writing") from e
            raise

    def abort(self) -> None:
        """Drop the temporary file (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
