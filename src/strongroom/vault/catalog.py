"""The catalog of recovery points and their soft-delete tombstones, loaded once and cached.

Points and tombstones are small sealed objects; both are loaded in parallel the first time
they are asked for.  An object that fails to verify twice (see
:func:`~strongroom.vault.envelope.read_checked`) is either raised (strict) or recorded for
``check``.  A tombstone that fails to verify is never trusted: the point it claims to hide
stays visible.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import field
from typing import TypeVar

from strongroom.errors import IntegrityError, MisnamedObject, ObjectNotFound
from strongroom.records import dataclass
from strongroom.storage.backend import Backend
from strongroom.storage.served import recorded_source
from strongroom.vault.crypto import VaultKeys
from strongroom.vault.envelope import MAGIC_POINT, check_content_name, open_object, read_checked
from strongroom.vault.points import POINTS_PREFIX, RecoveryPoint, decode_manifest
from strongroom.vault.tombstones import DELETED_PREFIX, Tombstone, open_tombstone

T = TypeVar("T")
log = logging.getLogger(__name__)
_LOAD_WORKERS = 8


def parallel_map(fn: Callable[[str], T], names: Sequence[str]) -> list[T]:
    """``fn`` over ``names`` on a small thread pool (object stores answer slowly, in parallel)."""
    if len(names) < 2:
        return [fn(n) for n in names]
    with ThreadPoolExecutor(_LOAD_WORKERS) as pool:
        return list(pool.map(fn, names))


Warn = Callable[[str], None]
"""Where a lenient vault reports an object it skipped (the CLI prints it on stderr)."""

_SKIPPED = {
    "index": "skipped: the index is only a cache of what the packs hold; "
    "`strongroom check --repair` rebuilds it",
    "points": "skipped: this object is not a readable recovery point; "
    "`strongroom check --repair` removes it",
    "tombstones": "ignored: the point it names stays visible; "
    "`strongroom check --repair` removes it",
}


@dataclass
class LoadProblems:
    """Objects that failed to load when opening leniently (for ``check``), each reported
    once to ``warn``."""

    index: list[IntegrityError] = field(default_factory=list)
    points: list[IntegrityError] = field(default_factory=list)
    tombstones: list[IntegrityError] = field(default_factory=list)
    warn: Warn | None = None
    _warned: set[str] = field(default_factory=set)

    def skip(self, kind: str, exc: IntegrityError) -> None:
        """Record ``exc`` under ``kind`` ("index", "points" or "tombstones") and warn."""
        found: list[IntegrityError] = getattr(self, kind)
        found.append(exc)
        key = exc.name or str(exc)
        if self.warn is not None and key not in self._warned:
            self._warned.add(key)
            self.warn(f"{exc}; {_SKIPPED[kind]}")

    def unreadable_names(self, kind: str) -> set[str]:
        """The names of the objects of ``kind`` that failed to load."""
        return {exc.name for exc in getattr(self, kind) if exc.name}


def _source_checked(backend: Backend, point: RecoveryPoint) -> RecoveryPoint | None:
    """The point, unless a vault server recorded it for another source than its manifest
    names: a token of one source committed a point claiming another (skipped, with a warning)."""
    recorded = recorded_source(backend, POINTS_PREFIX + point.point_id)
    if recorded is None or recorded == point.manifest.source:
        return point
    log.warning(
        "warning: skipping recovery point %s: it claims source %r but was committed for source %r",
        point.short_id,
        point.manifest.source,
        recorded,
    )
    return None


class PointCatalog:
    def __init__(
        self, backend: Backend, keys: VaultKeys, vault_id: bytes, problems: LoadProblems
    ) -> None:
        self._backend, self._keys, self._vault_id = backend, keys, vault_id
        self._problems = problems
        self._points: dict[str, RecoveryPoint] | None = None
        self._stones: dict[str, Tombstone] | None = None
        self._lock = threading.Lock()

    def start_empty(self) -> None:
        """A new vault: nothing to load."""
        self._points, self._stones = {}, {}

    def reload(self) -> None:
        """Forget what was loaded: the next call lists the backend again."""
        with self._lock:
            self._points = self._stones = None

    # --- points ----------------------------------------------------------------------------

    def load_point(self, name: str) -> RecoveryPoint:
        return read_checked(self._backend, name, lambda stored: self.load_point_bytes(name, stored))

    def load_point_bytes(self, name: str, stored: bytes) -> RecoveryPoint:
        """The point ``stored`` holds, verified as the object ``name``."""
        plain = open_object(MAGIC_POINT, self._keys.point_key, self._vault_id, stored, name=name)
        manifest = decode_manifest(plain, name)
        try:
            check_content_name(name, stored)
        except IntegrityError as exc:
            # authentic, but not under its name: prune must not collect its data
            raise MisnamedObject(
                f"{exc}; it is a genuine recovery point of this vault ({manifest.kind} "
                f"{manifest.source} {manifest.time[:19]})",
                name=name,
            ) from None
        return RecoveryPoint(name.rsplit("/", 1)[-1], manifest)

    def points(self, strict: bool) -> dict[str, RecoveryPoint]:
        with self._lock:
            if self._points is None:
                self._points = self._load_points(strict)
            return dict(self._points)

    def _load_points(self, strict: bool) -> dict[str, RecoveryPoint]:
        names = [info.name for info in self._backend.list(POINTS_PREFIX)]
        self._problems.points.clear()

        def load(name: str) -> RecoveryPoint | IntegrityError | None:
            try:
                return _source_checked(self._backend, self.load_point(name))
            except ObjectNotFound:
                return None  # removed (by prune) between the listing and the read
            except IntegrityError as exc:
                return exc

        loaded: dict[str, RecoveryPoint] = {}
        for item in parallel_map(load, names):
            if isinstance(item, IntegrityError):
                if strict:
                    raise item
                self._problems.skip("points", item)
            elif item is not None:
                loaded[item.point_id] = item
        return loaded

    def add_point(self, point: RecoveryPoint) -> None:
        with self._lock:
            if self._points is not None:
                self._points[point.point_id] = point

    def drop_point(self, point_id: str) -> None:
        with self._lock:
            if self._points is not None:
                self._points.pop(point_id, None)

    # --- tombstones ------------------------------------------------------------------------

    def tombstones(self) -> dict[str, Tombstone]:
        with self._lock:
            if self._stones is None:
                self._stones = self._load_tombstones()
            return dict(self._stones)

    def _load_tombstones(self) -> dict[str, Tombstone]:
        names = [info.name for info in self._backend.list(DELETED_PREFIX)]
        self._problems.tombstones.clear()

        def load(name: str) -> Tombstone | IntegrityError | None:
            try:
                return read_checked(
                    self._backend,
                    name,
                    lambda stored: open_tombstone(self._keys, self._vault_id, name, stored),
                )
            except ObjectNotFound:
                return None
            except IntegrityError as exc:
                return exc

        found: dict[str, Tombstone] = {}
        for item in parallel_map(load, names):
            if isinstance(item, IntegrityError):
                self._problems.skip("tombstones", item)
            elif item is not None:
                found[item.point] = item
        return found

    def set_tombstone(self, stone: Tombstone) -> None:
        with self._lock:
            if self._stones is not None:
                self._stones[stone.point] = stone

    def drop_tombstone(self, point_id: str) -> None:
        with self._lock:
            if self._stones is not None:
                self._stones.pop(point_id, None)
