"""The Backend protocol: a flat namespace of immutable named objects.

Names are '/'-separated relative paths such as ``data/ab/ab12...`` or ``keys/3f...``.  Every
backend raises only :mod:`strongroom.errors` storage errors, classified as not-found,
permanent or transient, so the retry wrapper and the vault can act on the class alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What ``stat`` and ``list`` report for an object.

    ``mtime`` is when the object was last written, in seconds since the epoch by the storage's
    clock, or None when the backend cannot tell.  Prune's grace period relies on it (an object
    of unknown age is treated as young, so it is never collected).  It does not take part in
    comparisons: two infos are equal when name and size are.
    """

    name: str
    size: int
    mtime: float | None = field(default=None, compare=False)


@runtime_checkable
class Backend(Protocol):
    """Storage for a vault's objects.

    ``put`` is atomic: a reader sees either no object or the whole object, never a partial
    one, and a crash during ``put`` leaves no object under the final name.  Objects are written
    once (locks are the only objects that are replaced in place).  All methods are safe to
    call from several threads at once.
    """

    def get(self, name: str) -> bytes:
        """The whole object; :class:`~strongroom.errors.ObjectNotFound` if absent."""
        ...

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer only at the end of the object)."""
        ...

    def put(self, name: str, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` under ``name`` atomically and durably, replacing any old object."""
        ...

    def delete(self, name: str) -> None:
        """Remove the object; :class:`~strongroom.errors.ObjectNotFound` if absent."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose name starts with ``prefix``, in no particular order."""
        ...

    def stat(self, name: str) -> ObjectInfo:
        """Size of the object; :class:`~strongroom.errors.ObjectNotFound` if absent."""
        ...

    def describe(self) -> str:
        """A human-readable location for messages (``/srv/vault``, ``azure://c/p``)."""
        ...

    def close(self) -> None:
        """Release connections and threads; the backend is not used afterwards."""
        ...
