"""The Backend protocol: a flat namespace of immutable named objects.

Names are '/'-separated relative paths such as ``data/ab/ab12...`` or ``keys/3f...``.  Every
backend raises only :mod:`strongroom.errors` storage errors, classified as not-found,
permanent or transient, so the retry wrapper and the vault can act on the class alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import field
from pathlib import Path
from typing import Protocol, runtime_checkable

from strongroom.records import dataclass


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


@dataclass(frozen=True, slots=True)
class BackendCapabilities:
    """What the layers above may assume of a backend, so none of them asks for its class
    (a wrapped backend is no longer an instance of what it wraps).  The defaults suit remote
    storage, where every request is a round trip and transfers wait on the network.
    """

    local_root: Path | None = None
    """The folder holding the objects when they are files on this machine: a backup must not
    enter it and a restore must not write into it."""
    range_span: int = 1 << 20
    """How many bytes one coalesced ranged read may span: large where a request costs a round
    trip, smaller on a local disk where a read costs only its bytes."""
    read_workers: int = 4
    """Threads worth reading chunks with at once (network reads wait, local ones compete for
    the interpreter lock)."""
    upload_workers: int = 4
    """Threads worth uploading packs with at once (each holds a pack buffer)."""
    batch_reads: bool = False
    """Whether fetching several ranges in one call (:func:`strongroom.storage.batch.get_ranges`)
    saves round trips: worth gathering a run's spans first (a served vault, where each
    request costs CPU on both sides)."""


REMOTE = BackendCapabilities()
"""The capabilities of a backend that declares none."""


@runtime_checkable
class DeclaresCapabilities(Protocol):
    """A backend that states its :class:`BackendCapabilities` (wrappers forward their inner
    backend's); one that does not is taken as remote storage."""

    @property
    def capabilities(self) -> BackendCapabilities: ...


def capabilities_of(backend: object) -> BackendCapabilities:
    """``backend``'s capabilities, :data:`REMOTE` when it declares none."""
    return backend.capabilities if isinstance(backend, DeclaresCapabilities) else REMOTE
