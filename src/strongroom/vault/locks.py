"""Vault locks: shared for backup and restore, exclusive for prune.

A lock is a sealed object ``locks/<random id>`` holding kind, host, pid and the time of its
last refresh.  A holder refreshes it every ``REFRESH_EVERY`` seconds; a lock is stale when its
refresh is older than ``STALE_AFTER`` or its holder's process is gone on this same host.
Acquiring writes the lock first and then looks for conflicts, so two racing clients both see
each other and both back off (never both proceed).

A holder also notices when its lock may have been broken: the refresh finds the object gone
(an exclusive locker removed it as stale) or finds its own last refresh too old (the process
was suspended, the network partitioned).  Such a lock is *lost*; the vault then verifies its
data before it commits a recovery point (see ``Vault.save_point``).

``STRONGROOM_LOCK_WAIT`` (seconds) is how long :meth:`Vault.lock` waits for a conflicting lock
to go away when the caller does not say.

A command that only reads can go on without a lock (:class:`NoLock`) when the storage takes
no writes (a read-only mount, a WORM bucket) or has no room for one, or when told to
(``--no-lock``); see :meth:`Vault.read_lock`.  Acquiring also removes the locks of processes
of this host that are gone (a backup killed with ``kill -9``): they can never be refreshed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Callable
from types import TracebackType

from strongroom.errors import IntegrityError, LockConflict, ObjectNotFound, StorageError
from strongroom.hostname import host_name
from strongroom.records import dataclass
from strongroom.storage.backend import Backend
from strongroom.vault.envelope import MAGIC_LOCK, open_object, seal_object

LOCKS_PREFIX = "locks/"
REFRESH_EVERY = 120.0
STALE_AFTER = 1800.0
WAIT_ENV = "STRONGROOM_LOCK_WAIT"
_POLL_FIRST, _POLL_MAX = 0.2, 5.0


def default_wait() -> float:
    """Seconds to wait for a lock when the caller gives none: ``STRONGROOM_LOCK_WAIT`` or 0."""
    text = os.environ.get(WAIT_ENV, "").strip()
    try:
        return max(0.0, float(text)) if text else 0.0
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class LockInfo:
    name: str
    exclusive: bool
    host: str
    pid: int
    refreshed: float

    def is_stale(self, now: float) -> bool:
        return now - self.refreshed > STALE_AFTER or self.holder_gone()

    def holder_gone(self) -> bool:
        """The holder was a process of this host that no longer exists."""
        if self.host != host_name():
            return False
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

    def encode(self, exclusive: bool) -> bytearray:
        doc = {"exclusive": exclusive, "host": host_name(), "pid": os.getpid()}
        doc["time"] = time.time()
        return seal_object(MAGIC_LOCK, self._key, self._vault_id, json.dumps(doc).encode())

    def decode(self, name: str, stored: bytes | bytearray) -> LockInfo:
        plain = open_object(MAGIC_LOCK, self._key, self._vault_id, stored, name=name)
        try:
            doc = json.loads(plain)
            info = LockInfo(
                name, bool(doc["exclusive"]), str(doc["host"]), int(doc["pid"]), float(doc["time"])
            )
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
            raise IntegrityError(f"{name}: malformed lock ({exc!r})", name=name) from None
        if not math.isfinite(info.refreshed):
            raise IntegrityError(f"{name}: malformed lock (time {info.refreshed})", name=name)
        return info


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

    def __init__(
        self,
        backend: Backend,
        codec: LockCodec,
        exclusive: bool,
        on_release: Callable[[VaultLock], None] | None = None,
    ) -> None:
        self._backend, self._codec, self.exclusive = backend, codec, exclusive
        self.name = LOCKS_PREFIX + os.urandom(16).hex()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_release = on_release
        self.refresh_error: StorageError | None = None
        self.refreshed = 0.0
        """Wall-clock time of the last successful write of the lock (others judge by it)."""
        self.lost = False
        """The lock was found removed, or went unrefreshed long enough to count as stale."""

    def acquire(self, wait: float = 0.0, on_wait: Callable[[str], None] | None = None) -> None:
        deadline = time.monotonic() + wait
        pause = _POLL_FIRST
        while True:
            self._backend.put(self.name, self._codec.encode(self.exclusive))
            self.refreshed = time.time()
            conflict = self._conflict()
            if conflict is None:
                break
            self._backend.delete(self.name)
            if time.monotonic() >= deadline:
                raise LockConflict(f"vault is locked: {conflict.describe()}")
            if on_wait:
                on_wait(conflict.describe())
            time.sleep(max(0.05, min(pause, deadline - time.monotonic())))
            pause = min(_POLL_MAX, pause * 2)
        self._thread = threading.Thread(target=self._refresh_loop, daemon=True, name="vault-lock")
        self._thread.start()

    def _conflict(self) -> LockInfo | None:
        now = time.time()
        dead = []
        for other in list_locks(self._backend, self._codec):
            if other.name == self.name:
                continue
            if other.holder_gone():
                dead.append(other)
            elif not other.is_stale(now) and (self.exclusive or other.exclusive):
                return other
        _remove_quietly(self._backend, dead)
        return None

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH_EVERY):
            self.refresh()

    def refresh(self) -> None:
        """Rewrite the lock; first notice whether it was lost meanwhile."""
        try:
            self._backend.stat(self.name)
        except ObjectNotFound:
            self.lost = True  # removed as stale by someone else: a prune may have run
        except StorageError as exc:
            self.refresh_error = exc
            return
        if time.time() - self.refreshed > STALE_AFTER:
            self.lost = True  # others may have judged it stale while we were away
        try:
            self._backend.put(self.name, self._codec.encode(self.exclusive))
            self.refreshed = time.time()
        except StorageError as exc:
            self.refresh_error = exc

    def reassert(self, wait: float = 0.0) -> None:
        """Make a lost lock good again: rewrite it, then wait out any exclusive lock.

        The same write-then-list as :meth:`acquire`: once this returns, no conflicting
        holder runs (one that started earlier is seen here, one that starts later sees us).
        """
        self._backend.put(self.name, self._codec.encode(self.exclusive))
        self.refreshed = time.time()
        self.lost = False
        deadline = time.monotonic() + wait
        pause = _POLL_FIRST
        while (conflict := self._conflict()) is not None:
            if time.monotonic() >= deadline:
                raise LockConflict(f"vault is locked: {conflict.describe()}")
            time.sleep(max(0.05, min(pause, deadline - time.monotonic())))
            pause = min(_POLL_MAX, pause * 2)

    def expired_locally(self) -> bool:
        """Cheap check (no storage call): lost, or unrefreshed long enough to look stale."""
        return self.lost or time.time() - self.refreshed > STALE_AFTER

    def still_held(self) -> bool:
        """Whether nobody can have taken this lock from us: not lost, fresh, still stored."""
        if self.expired_locally():
            return False
        try:
            self._backend.stat(self.name)
        except ObjectNotFound:
            self.lost = True
            return False
        return True

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(ObjectNotFound):
            self._backend.delete(self.name)
        if self._on_release is not None:
            self._on_release(self)

    def __enter__(self) -> VaultLock:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _remove_quietly(backend: Backend, locks: list[LockInfo]) -> None:
    """Delete locks whose holders died on this host; a failure only leaves them for later."""
    for lock in locks:
        with contextlib.suppress(StorageError):
            backend.delete(lock.name)


class NoLock:
    """What a reading command holds when it goes on without a lock; ``reason`` says why."""

    exclusive = False

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def release(self) -> None:
        """Nothing was written, so nothing to remove."""

    def __enter__(self) -> NoLock:
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
