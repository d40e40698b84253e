"""Space kept in reserve so that prune (and forget) can run on a full disk.

Prune must write before it deletes (a lock, then index objects without the dead packs), so on
a disk with no free byte it could never start.  A local vault therefore keeps a preallocated
file, ``.reserve`` at its root (zeros, allocated with ``posix_fallocate``; ``list`` never
reports it, so it is no vault object): backups top it up when they take their lock, and a
command allowed to use it (prune's lock, forget) shrinks it a step at a time whenever a write
fails for lack of space, then retries.  Prune grows it back once it has freed space.

The reserve is at most :data:`RESERVE_MAX` and at most 1/64 of the file system, so a small
test file system is not filled by it; a step is enough for a lock and the largest index
object prune writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

from strongroom.errors import StorageFull

RESERVE_NAME = ".reserve"
RESERVE_MAX = 8 << 20
RESERVE_STEP = 4 << 20
RESERVE_FRACTION = 64

T = TypeVar("T")


@runtime_checkable
class SpaceReserve(Protocol):
    """A backend that can hold space in reserve (the local one; object storage never fills)."""

    def keep_reserve(self) -> int:
        """Grow the reserve to its full size as far as free space allows; its size now."""
        ...

    def release_reserve(self, nbytes: int) -> int:
        """Give up to ``nbytes`` of the reserve back to the file system; how many it gave."""
        ...


def keep_reserve(backend: object) -> int:
    """Top up the reserve of a backend that has one (0 for the others)."""
    return backend.keep_reserve() if isinstance(backend, SpaceReserve) else 0


def with_reserve(backend: object, action: Callable[[], T]) -> T:
    """Run ``action``; while it fails for lack of space, give up a step of the reserve and
    run it again.  The last :class:`StorageFull` propagates once the reserve is used up."""
    while True:
        try:
            return action()
        except StorageFull:
            if not isinstance(backend, SpaceReserve) or not backend.release_reserve(RESERVE_STEP):
                raise
