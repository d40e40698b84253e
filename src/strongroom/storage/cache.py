"""A local read cache in front of a remote backend, for content-addressed objects.

Objects under the cached prefixes (index and recovery points by default) are named by the
BLAKE3 of their stored bytes, so a cached copy is trusted only while its hash still equals the
last component of its name: a corrupted or truncated cache file is simply fetched again.  Bytes
from the remote that do not match are returned uncached, so the vault reports the integrity error
with the object's name.  The remote stays the truth for ``list``, ``stat`` and existence.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from strongroom.errors import ObjectNotFound, StorageError
from strongroom.storage.backend import Backend, BackendCapabilities, ObjectInfo, capabilities_of
from strongroom.storage.batch import Range, get_ranges
from strongroom.storage.local import LocalBackend
from strongroom.storage.names import check_name, check_range, content_digest

log = logging.getLogger(__name__)

_DIGEST_HEX = re.compile(r"^[0-9a-f]{64}$")


def content_matches(name: str, data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` hashes to the BLAKE3 hex digest that ends ``name``."""
    return content_digest(data).hex() == name.rpartition("/")[2]


class CachingBackend:
    """Caches objects under ``cached_prefixes`` in ``cache_dir``; everything else passes through.

    Only names whose last component is a BLAKE3 hex digest are cached.  Failing to write or
    clean the cache never fails an operation: the cache is an optimisation, not a copy.
    """

    def __init__(
        self,
        inner: Backend,
        cache_dir: Path,
        cached_prefixes: tuple[str, ...] = ("index/", "points/"),
    ) -> None:
        self.inner = inner
        self.cache = LocalBackend(cache_dir)
        self.cached_prefixes = cached_prefixes

    @property
    def capabilities(self) -> BackendCapabilities:
        return capabilities_of(self.inner)

    def describe(self) -> str:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()
        self.cache.close()

    def _cacheable(self, name: str) -> bool:
        check_name(name)
        return name.startswith(self.cached_prefixes) and bool(
            _DIGEST_HEX.match(name.rpartition("/")[2])
        )

    def _cached(self, name: str) -> bytes | None:
        """The verified local copy, or None (a copy that fails verification is dropped)."""
        try:
            data = self.cache.get(name)
        except ObjectNotFound:
            return None
        except StorageError as e:
            log.warning("cannot read cached %s: %s", name, e)
            return None
        if content_matches(name, data):
            return data
        log.warning("cached %s does not match its hash; fetching it again", name)
        self._forget(name)
        return None

    def _remember(self, name: str, data: bytes | bytearray | memoryview) -> None:
        try:
            self.cache.put(name, data)
        except StorageError as e:
            log.warning("cannot cache %s: %s", name, e)

    def _forget(self, name: str) -> None:
        try:
            self.cache.delete(name)
        except ObjectNotFound:
            pass
        except StorageError as e:
            log.warning("cannot drop cached %s: %s", name, e)

    def get(self, name: str) -> bytes:
        if not self._cacheable(name):
            return self.inner.get(name)
        data = self._cached(name)
        if data is not None:
            return data
        data = self.inner.get(name)
        if content_matches(name, data):
            self._remember(name, data)
        return data

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        if not self._cacheable(name):
            return self.inner.get_range(name, offset, length)
        check_range(name, offset, length)
        return self.get(name)[offset : offset + length]

    def get_ranges(self, ranges: Sequence[Range]) -> list[memoryview]:
        if any(self._cacheable(name) for name, _, _ in ranges):
            return [memoryview(self.get_range(*r)) for r in ranges]
        return get_ranges(self.inner, ranges)

    def put(self, name: str, data: bytes | bytearray | memoryview) -> None:
        self.inner.put(name, data)
        if self._cacheable(name) and content_matches(name, data):
            self._remember(name, data)

    def delete(self, name: str) -> None:
        try:
            self.inner.delete(name)
        finally:
            if self._cacheable(name):
                self._forget(name)

    def stat(self, name: str) -> ObjectInfo:
        return self.inner.stat(name)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """List the remote; once a listing is read to its end, drop cached objects it lacks."""
        return self._list(self.inner.list(prefix), self._scopes(prefix))

    def _list(self, listing: Iterator[ObjectInfo], scopes: tuple[str, ...]) -> Iterator[ObjectInfo]:
        seen: set[str] = set()  # only names under the scopes: a listing of data/ may be huge
        for info in listing:
            if scopes and info.name.startswith(scopes):
                seen.add(info.name)
            yield info
        # Reached only when the caller consumed everything: a partial listing proves nothing.
        # The cost is one local folder walk per cached prefix the listing covers.  A put that
        # races with the listing may lose its cached copy, which costs one fetch later.
        for scope in scopes:
            self._prune(scope, seen)

    def _scopes(self, prefix: str) -> tuple[str, ...]:
        """The parts of the cached prefixes that a listing of ``prefix`` covers completely."""
        return tuple(
            prefix if prefix.startswith(cached) else cached
            for cached in self.cached_prefixes
            if prefix.startswith(cached) or cached.startswith(prefix)
        )

    def _prune(self, scope: str, seen: set[str]) -> None:
        try:
            stale = [i.name for i in self.cache.list(scope) if i.name not in seen]
        except StorageError as e:
            log.warning("cannot list the cache under %s: %s", scope, e)
            return
        for name in stale:
            self._forget(name)
