"""Space kept in reserve so that prune (and forget) can run on a full disk.

Prune must write before it deletes (a lock, then index objects without the dead packs), so on
a disk with no free byte it could never start.  A local vault therefore keeps a preallocated
file, ``.reserve`` at its root (zeros, allocated with ``posix_fallocate``; ``list`` never
reports it, so it is no vault object): backups top it up when they take their lock, and a
command allowed to use it shrinks it a step (a quarter) at a time whenever a write fails for
lack of space, then retries.  Forget may use half of it (its lock and tombstones), prune all
of it (its lock and one index object at a time): forgetting on a full disk must leave room for
the prune that follows.  Prune grows it back once it has freed space.

The reserve is at most :data:`RESERVE_MAX` and at most 1/64 of the file system, so a small
test file system is not filled by it; 8 MiB holds a lock and the largest index object prune
writes (32,768 entries of 48 bytes) several times over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

from strongroom.errors import StorageFull

RESERVE_NAME = ".reserve"
RESERVE_MAX = 8 << 20
RESERVE_FRACTION = 64
RESERVE_STEPS = 4
FORGET_KEEPS = 0.5
"""Forget leaves this share of the reserve for prune."""

T = TypeVar("T")


@runtime_checkable
class SpaceReserve(Protocol):
    """A backend that can hold space in reserve (the local one; object storage never fills)."""

    def keep_reserve(self) -> int:
        """Grow the reserve to its full size as far as free space allows; its size now."""
        ...

    def release_reserve(self, keep: float = 0.0) -> int:
        """Give a step of the reserve back to the file system, keeping at least ``keep`` (a
        share of its full size); how many bytes it gave (0: nothing left to give)."""
        ...


def keep_reserve(backend: object) -> int:
    """Top up the reserve of a backend that has one (0 for the others)."""
    return backend.keep_reserve() if isinstance(backend, SpaceReserve) else 0


def with_reserve(backend: object, action: Callable[[], T], keep: float = 0.0) -> T:
    """Run ``action``; while it fails for lack of space, give up a step of the reserve (down
    to ``keep`` of it) and run it again.  The last :class:`StorageFull` propagates once that
    much of the reserve is used up."""
    while True:
        try:
            return action()
        except StorageFull:
            if not isinstance(backend, SpaceReserve) or not backend.release_reserve(keep):
                raise
