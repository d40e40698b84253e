"""Vault locks: shared for backup and restore, exclusive for prune.

A lock is a sealed object ``locks/<random id>`` holding kind, host, pid and the time of its
last refresh.  A holder refreshes it every ``REFRESH_EVERY`` seconds; a lock is stale when its
refresh is older than ``STALE_AFTER`` or its holder's process is gone on this same host.
Acquiring writes the lock first and then looks for conflicts, so two racing clients both see
each other and both back off (never both proceed).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from strongroom.errors import IntegrityError, LockConflict, ObjectNotFound, StorageError
from strongroom.storage.backend import Backend
from strongroom.vault.envelope import MAGIC_LOCK, open_object, seal_object

LOCKS_PREFIX = "locks/"
REFRESH_EVERY = 120.0
STALE_AFTER = 1800.0


@dataclass(frozen=True)
class LockInfo:
    name: str
    exclusive: bool
    host: str
    pid: int
    refreshed: float

    def is_stale(self, now: float) -> bool:
        if now - self.refreshed > STALE_AFTER:
            return True
        if self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def describe(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        age = int(time.time() - self.refreshed)
        return f"{kind} lock held by pid {self.pid} on {self.host} (refreshed {age}s ago)"


class LockCodec:
    def __init__(self, key: bytes, vault_id: bytes) -> None:
        self._key, self._vault_id = key, vault_id

    def encode(self, exclusive: bool) -> bytes:
        doc = {"exclusive": exclusive, "host": socket.gethostname(), "pid": os.getpid()}
        doc["time"] = time.time()
        return seal_object(MAGIC_LOCK, self._key, self._vault_id, json.dumps(doc).encode())

    def decode(self, name: str, stored: bytes) -> LockInfo:
        doc = json.loads(open_object(MAGIC_LOCK, self._key, self._vault_id, stored, name=name))
        return LockInfo(
            name, bool(doc["exclusive"]), doc["host"], int(doc["pid"]), float(doc["time"])
        )


def list_locks(backend: Backend, codec: LockCodec) -> list[LockInfo]:
    """Every readable lock; objects that vanish or fail authentication are not locks of ours."""
    found = []
    for info in backend.list(LOCKS_PREFIX):
        try:
            found.append(codec.decode(info.name, backend.get(info.name)))
        except (ObjectNotFound, IntegrityError, ValueError, KeyError):
            continue
    return found


class VaultLock:
    """A held lock; a daemon thread refreshes it until :meth:`release`."""

    def __init__(self, backend: Backend, codec: LockCodec, exclusive: bool) -> None:
        self._backend, self._codec, self.exclusive = backend, codec, exclusive
        self.name = LOCKS_PREFIX + os.urandom(16).hex()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh_error: StorageError | None = None

    def acquire(self, wait: float = 0.0, on_wait: Callable[[str], None] | None = None) -> None:
        deadline = time.monotonic() + wait
        while True:
            self._backend.put(self.name, self._codec.encode(self.exclusive))
            conflict = self._conflict()
            if conflict is None:
                break
            self._backend.delete(self.name)
            if time.monotonic() >= deadline:
                raise LockConflict(f"vault is locked: {conflict.describe()}")
            if on_wait:
                on_wait(conflict.describe())
            time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
        self._thread = threading.Thread(target=self._refresh_loop, daemon=True, name="vault-lock")
        self._thread.start()

    def _conflict(self) -> LockInfo | None:
        now = time.time()
        for other in list_locks(self._backend, self._codec):
            if other.name == self.name or other.is_stale(now):
                continue
            if self.exclusive or other.exclusive:
                return other
        return None

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH_EVERY):
            try:
                self._backend.put(self.name, self._codec.encode(self.exclusive))
            except StorageError as exc:
                self.refresh_error = exc

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(ObjectNotFound):
            self._backend.delete(self.name)

    def __enter__(self) -> VaultLock:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def remove_stale_locks(backend: Backend, codec: LockCodec) -> list[LockInfo]:
    now = time.time()
    removed = []
    for lock in list_locks(backend, codec):
        if lock.is_stale(now):
            try:
                backend.delete(lock.name)
            except ObjectNotFound:
                continue
            removed.append(lock)
    return removed
