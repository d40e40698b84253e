"""A wrapping backend that retries transient failures with exponential backoff and jitter."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from strongroom.errors import TransientStorageError
from strongroom.storage.backend import Backend, BackendCapabilities, ObjectInfo, capabilities_of
from strongroom.storage.batch import Range, get_ranges

log = logging.getLogger(__name__)

T = TypeVar("T")


class RetryingBackend:
    """Retries :class:`~strongroom.errors.TransientStorageError` up to ``attempts`` times in all.

    Not-found and permanent errors pass through at once: retrying cannot change them.  Delays
    grow as ``base_delay * 2**n`` up to ``max_delay`` with "equal jitter" (half fixed, half
    random), so many threads that failed together do not retry in lockstep yet each still waits.
    ``sleep`` is a parameter so tests can run without real waits.
    """

    def __init__(
        self,
        inner: Backend,
        attempts: int = 5,
        base_delay: float = 0.05,
        max_delay: float = 2.0,
        *,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {attempts}")
        self.inner = inner
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._rng = random.Random(seed)
        self.retries = 0
        """Retries made so far (for tests and statistics; updated without a lock, approximate)."""

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first retry)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0**retry)
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _call(self, op: str, name: str, fn: Callable[[], T]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except TransientStorageError as e:
                if attempt == self.attempts:
                    raise TransientStorageError(
                        f"{op} {name} on {self.inner.describe()} failed after "
                        f"{self.attempts} attempts: {e}",
                        name=e.name if e.name is not None else name,
                    ) from e
                wait = self.delay(attempt - 1)
                log.debug("%s %s failed (%s); retry %d in %.3fs", op, name, e, attempt, wait)
                self.retries += 1
                self._sleep(wait)
        raise AssertionError("unreachable: the loop returns or raises")

    def get(self, name: str) -> bytes:
        return self._call("get", name, lambda: self.inner.get(name))

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        return self._call("get_range", name, lambda: self.inner.get_range(name, offset, length))

    def get_ranges(self, ranges: Sequence[Range]) -> list[memoryview]:
        first = ranges[0][0] if ranges else "/"
        return self._call("get_ranges", first, lambda: get_ranges(self.inner, ranges))

    def put(self, name: str, data: bytes | bytearray | memoryview) -> None:
        self._call("put", name, lambda: self.inner.put(name, data))

    def delete(self, name: str) -> None:
        # Kept strict: if an attempt deleted the object but its reply was lost, the retry
        # reports ObjectNotFound.  Callers that delete idempotently (prune) treat that as done.
        self._call("delete", name, lambda: self.inner.delete(name))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # A stream that fails halfway cannot be resumed without repeating names, so each
        # attempt collects the whole listing before anything is handed out.
        return iter(self._call("list", prefix or "/", lambda: list(self.inner.list(prefix))))

    def stat(self, name: str) -> ObjectInfo:
        return self._call("stat", name, lambda: self.inner.stat(name))

    @property
    def capabilities(self) -> BackendCapabilities:
        return capabilities_of(self.inner)

    def describe(self) -> str:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()
