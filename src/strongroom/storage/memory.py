"""An in-memory backend for unit tests: a dict behind a lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from strongroom.errors import ObjectNotFound
from strongroom.storage.backend import ObjectInfo
from strongroom.storage.names import check_name, check_prefix, check_range


class MemoryBackend:
    """Objects in a dict; thread-safe, and as strict about names and ranges as the others.

    Each object remembers when it was written (``time.time()``), reported as ``mtime``;
    :meth:`set_mtime` lets tests age objects.
    """

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._mtimes: dict[str, float] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"memory:{id(self):x}"

    def close(self) -> None:
        """Nothing to release; the objects stay readable for assertions."""

    def _missing(self, name: str) -> ObjectNotFound:
        return ObjectNotFound(f"object {name} not found in {self.describe()}", name=name)

    def get(self, name: str) -> bytes:
        check_name(name)
        with self._lock:
            data = self._objects.get(name)
        if data is None:
            raise self._missing(name)
        return data

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset``; empty when ``offset`` is at or past the end."""
        check_range(name, offset, length)
        return self.get(name)[offset : offset + length]

    def put(self, name: str, data: bytes | bytearray | memoryview) -> None:
        check_name(name)
        copy = bytes(data)  # the caller may reuse its buffer after put returns
        with self._lock:
            self._objects[name] = copy
            self._mtimes[name] = time.time()

    def delete(self, name: str) -> None:
        check_name(name)
        with self._lock:
            if self._objects.pop(name, None) is None:
                raise self._missing(name)
            self._mtimes.pop(name, None)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        with self._lock:
            found = [
                ObjectInfo(n, len(d), self._mtimes.get(n))
                for n, d in self._objects.items()
                if n.startswith(prefix)
            ]
        return iter(found)

    def stat(self, name: str) -> ObjectInfo:
        check_name(name)
        with self._lock:
            data = self._objects.get(name)
            mtime = self._mtimes.get(name)
        if data is None:
            raise self._missing(name)
        return ObjectInfo(name, len(data), mtime)

    def set_mtime(self, name: str, mtime: float) -> None:
        """Pretend ``name`` was written at ``mtime`` (for tests of age-based rules)."""
        with self._lock:
            if name not in self._objects:
                raise self._missing(name)
            self._mtimes[name] = mtime
