"""What a client tells a vault server beyond the objects themselves, and what it hears back.

A server scoping tokens to sources (``docs/server.md``) cannot decrypt a recovery point, so the
vault names the point's source while it commits it: :func:`committing_point` sets it for the
``put`` of ``points/<id>`` made in that block (through any retry or cache wrappers, in the same
thread), and the HTTP backend sends it along.  The server answers every listing and read of a
point with the source it recorded, which the vault compares with the decrypted manifest
(:func:`recorded_source`).  Other backends ignore all of this.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_committing: ContextVar[str | None] = ContextVar("strongroom_point_source", default=None)


@contextmanager
def committing_point(source: str) -> Iterator[None]:
    """Within the block, a put of a recovery point is for ``source``."""
    reset = _committing.set(source)
    try:
        yield
    finally:
        _committing.reset(reset)


def committing_source() -> str | None:
    return _committing.get()


def _served(backend: object) -> Any:
    """The innermost backend under the retry and cache wrappers (they keep it in ``inner``)."""
    while hasattr(backend, "inner"):
        backend = backend.inner
    return backend


def recorded_source(backend: object, point_name: str) -> str | None:
    """The source a vault server recorded for a point it listed or sent, if any."""
    sources = getattr(_served(backend), "point_sources", None)
    return sources.get(point_name) if isinstance(sources, dict) else None


def server_decides_settings(backend: object) -> bool:
    """True if a vault server judges settings changes (its admins may lower protections)."""
    return bool(getattr(_served(backend), "server_decides_settings", False))
