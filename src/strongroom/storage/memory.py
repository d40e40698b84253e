"""An in-memory backend for unit tests: a dict behind a lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from strongroom.errors import ObjectNotFound
from strongroom.storage.backend import ObjectInfo
from strongroom.storage.names import check_name, check_prefix, check_range


class MemoryBackend:
    """Objects in a dict; thread-safe, and as strict about names and ranges as the others."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
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

    def delete(self, name: str) -> None:
        check_name(name)
        with self._lock:
            if self._objects.pop(name, None) is None:
                raise self._missing(name)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        with self._lock:
            found = [
                ObjectInfo(n, len(d)) for n, d in self._objects.items() if n.startswith(prefix)
            ]
        return iter(found)

    def stat(self, name: str) -> ObjectInfo:
        return ObjectInfo(name, len(self.get(name)))
