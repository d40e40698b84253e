"""What a client tells a vault server beyond the objects themselves, and what it hears back.

A server scoping tokens to sources (``docs/server.md``) cannot decrypt a recovery point, so the
vault names the point's source while it commits it: :func:`committing_point` sets it for the
``put`` of ``points/<id>`` made in that block (through any retry or cache wrappers, in the same
thread), and the HTTP backend sends it along.  The server answers every listing and read of a
point with the source it recorded, which the vault compares with the decrypted manifest
(:func:`recorded_source`).  Prune's repack names the sources its new packs and index objects
serve (:func:`storing_for`), taken from the sources the server lists for the old packs
(:func:`pack_sources`).  Other backends ignore all of this.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_committing: ContextVar[str | None] = ContextVar("strongroom_point_source", default=None)
_committing_meta: ContextVar[dict[str, Any] | None] = ContextVar(
    "strongroom_point_meta", default=None
)
_storing_for: ContextVar[tuple[str, ...]] = ContextVar("strongroom_pack_sources", default=())


@contextmanager
def committing_point(source: str, meta: dict[str, Any] | None = None) -> Iterator[None]:
    """Within the block, a put of a recovery point is for ``source``; ``meta`` is what the
    server may show of it (kind, time, consistency, tags, bytes added: the dashboard's
    mirror, docs/server.md), never its roots."""
    reset = _committing.set(source)
    reset_meta = _committing_meta.set(meta)
    try:
        yield
    finally:
        _committing_meta.reset(reset_meta)
        _committing.reset(reset)


def committing_source() -> str | None:
    return _committing.get()


def committing_meta() -> dict[str, Any] | None:
    return _committing_meta.get()


@contextmanager
def storing_for(sources: tuple[str, ...]) -> Iterator[None]:
    """Within the block, packs and index objects put are for ``sources`` (prune's repack:
    the sources of the packs their chunks came from, so scoped tokens can read them).
    Uploads a chunk writer runs in its threads carry the context they were sealed in."""
    reset = _storing_for.set(sources)
    try:
        yield
    finally:
        _storing_for.reset(reset)


def storing_sources() -> tuple[str, ...]:
    return _storing_for.get()


def listed_sources(backend: object, name: str) -> tuple[str, ...]:
    """The sources a vault server recorded for a pack or index object it listed (to an
    unscoped token); empty for other backends."""
    found = getattr(_served(backend), "object_sources", None)
    return tuple(found.get(name, ())) if isinstance(found, dict) else ()


def pack_sources(backend: object) -> dict[str, tuple[str, ...]]:
    """Every pack's recorded sources, as a vault server lists them to an unscoped token
    (``data/...`` name -> sources; empty for other backends, which record none)."""
    served = _served(backend)
    if not hasattr(served, "object_sources"):
        return {}
    for _ in served.list("data/"):
        pass
    found = served.object_sources
    return {n: tuple(v) for n, v in found.items() if n.startswith("data/")}


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
