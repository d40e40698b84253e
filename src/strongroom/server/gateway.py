"""The storage gateway: what a token of each role may do to each kind of vault object.

The server never holds a vault's keys, so it judges objects by what it can see without them:
the name (one of the kinds of ``docs/format.md`` §1, nothing else), the bytes' BLAKE3 for
content-named objects, whether the name exists, the object's age (storage mtime), the plain
settings in ``config`` and, for locks, which token wrote them.  Names are written once: a put
of an existing name is accepted only with identical bytes (idempotent), except for locks
(rewritten by their holder) and ``config`` (an admin's settings change, which may never lower
``immutable_days``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass

from strongroom.errors import ObjectNotFound, PermanentStorageError
from strongroom.server.auth import DAY, ApiError
from strongroom.server.catalog import Catalog, TokenRow
from strongroom.storage.backend import Backend, ObjectInfo
from strongroom.storage.names import check_name, check_prefix, content_digest

ANY_ROLE = ("backup", "restore", "maintenance", "admin")
WRITERS = ("backup", "maintenance", "admin")
PRUNERS = ("maintenance", "admin")


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    pattern: re.Pattern[str]
    content_named: bool
    create: tuple[str, ...]
    delete: tuple[str, ...]


KINDS = (
    # the redundant copies (docs/format.md §3.1, §4.1) follow the primary's rules
    Kind("config", re.compile(r"config(-copy)?"), False, ("admin",), ("admin",)),
    Kind("keys", re.compile(r"keys(-copy)?/[0-9a-f]{16}"), False, ("admin",), ("admin",)),
    Kind("data", re.compile(r"data/([0-9a-f]{2})/\1[0-9a-f]{62}"), True, WRITERS, PRUNERS),
    Kind("index", re.compile(r"index/[0-9a-f]{64}"), True, WRITERS, PRUNERS),
    # repair never writes points, so maintenance has no need to create one
    Kind("points", re.compile(r"points/[0-9a-f]{64}"), True, ("backup", "admin"), PRUNERS),
    Kind("deleted", re.compile(r"deleted/[0-9a-f]{64}"), False, PRUNERS, PRUNERS),
    # deleting another holder's lock: maintenance (prune removes stale locks) and admin only
    Kind("locks", re.compile(r"locks/[0-9a-f]{32}"), False, ANY_ROLE, PRUNERS),
)


def kind_of(name: str) -> Kind:
    """The object kind ``name`` belongs to; 400 for anything a vault does not hold."""
    try:
        check_name(name)
    except PermanentStorageError as exc:
        raise ApiError(400, str(exc)) from None
    for kind in KINDS:
        if kind.pattern.fullmatch(name):
            return kind
    raise ApiError(400, f"{name!r} is not the name of a vault object")


def _settings(raw: bytes, what: str) -> dict[str, object]:
    try:
        doc = json.loads(raw)
        settings = doc["settings"]
        if not isinstance(settings, dict) or not isinstance(doc.get("id"), str):
            raise TypeError
        return {"id": doc["id"], **settings}
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, f"{what} is not a strongroom vault config") from None


def _days(settings: dict[str, object], key: str) -> float:
    value = settings.get(key, 0)
    return float(value) if isinstance(value, int | float) else 0.0


class VaultGateway:
    """One vault's backend with the server's rules in front of it (thread-safe)."""

    def __init__(self, name: str, backend: Backend, catalog: Catalog) -> None:
        self.name, self.backend, self.catalog = name, backend, catalog
        # Check-then-put of one name must not interleave within this process; 64 stripes
        # keep unrelated names from waiting on each other.
        self._stripes = [threading.Lock() for _ in range(64)]

    def _lock_for(self, name: str) -> threading.Lock:
        return self._stripes[hash(name) % len(self._stripes)]

    # --- reads (every role) ----------------------------------------------------------------

    def get(self, name: str, offset: int | None, length: int | None) -> bytes:
        kind_of(name)
        if offset is None and length is None:
            return self.backend.get(name)
        if offset is None or length is None or offset < 0 or length < 0:
            raise ApiError(400, "give both offset and length, neither negative")
        return self.backend.get_range(name, offset, length)

    def stat(self, name: str) -> ObjectInfo:
        kind_of(name)
        return self.backend.stat(name)

    def list(self, prefix: str) -> list[ObjectInfo]:
        try:
            check_prefix(prefix)
        except PermanentStorageError as exc:
            raise ApiError(400, str(exc)) from None
        return list(self.backend.list(prefix))

    # --- writes ----------------------------------------------------------------------------

    def put(self, token: TokenRow, name: str, data: bytes) -> bool:
        """Store ``data`` under ``name``; True if created, False if it was there already."""
        kind = kind_of(name)
        if token.role not in kind.create:
            what = f"a {token.role} token cannot write {kind.name} objects"
            raise ApiError(403, what, "forbidden")
        if kind.content_named and content_digest(data).hex() != name.rpartition("/")[2]:
            raise ApiError(400, f"the bytes sent for {name} do not hash to its name")
        with self._lock_for(name):
            existing = self._existing(name)
            if existing is None:
                self.backend.put(name, data)
                if kind.name == "locks":
                    self.catalog.set_lock_owner(self.name, name, token.id)
                return True
            self._check_replace(token, kind, name, data)
            return False

    def _existing(self, name: str) -> ObjectInfo | None:
        try:
            return self.backend.stat(name)
        except ObjectNotFound:
            return None

    def _check_replace(self, token: TokenRow, kind: Kind, name: str, data: bytes) -> None:
        """Accept a put of an existing name (rewriting it where allowed) or refuse it."""
        if kind.content_named:
            return  # the name is the hash of the bytes: the same bytes are stored already
        if kind.name == "locks":
            if token.role != "admin" and self.catalog.lock_owner(self.name, name) != token.id:
                raise ApiError(403, f"{name} is another token's lock", "forbidden")
            self.backend.put(name, data)
            return
        old = self.backend.get(name)
        if old == data:
            return
        if kind.name == "config":  # an admin's settings change (create is admin-only)
            self._check_settings(old, data)
            self.backend.put(name, data)
            return
        raise ApiError(409, f"{name} exists and objects are never replaced", "exists")

    def _check_settings(self, old: bytes, new: bytes) -> None:
        before, after = _settings(old, "the stored config"), _settings(new, "the new config")
        if after["id"] != before["id"]:
            raise ApiError(400, "a config of another vault cannot replace this one")
        if _days(after, "immutable_days") < _days(before, "immutable_days"):
            raise ApiError(403, "immutable_days can be raised but never lowered", "forbidden")

    # --- deletes ---------------------------------------------------------------------------

    def delete(self, token: TokenRow, name: str) -> None:
        kind = kind_of(name)
        own_lock = kind.name == "locks" and self.catalog.lock_owner(self.name, name) == token.id
        if token.role not in kind.delete and not own_lock:
            what = "other tokens' locks" if kind.name == "locks" else f"{kind.name} objects"
            raise ApiError(403, f"a {token.role} token cannot delete {what}", "forbidden")
        with self._lock_for(name):
            if kind.name == "points":
                self._check_point_delete(token, name)
            self.backend.delete(name)
            if kind.name == "locks":
                self.catalog.drop_lock_owner(self.name, name)

    def _check_point_delete(self, token: TokenRow, name: str) -> None:
        """Immutability binds every role; maintenance also waits out the soft-delete window
        (the point's tombstone must exist and be older than ``soft_delete_days``)."""
        settings = _settings(self.backend.get("config"), "the stored config")
        now = time.time()
        info = self.backend.stat(name)
        immutable = _days(settings, "immutable_days") * DAY
        if immutable and (info.mtime is None or now - info.mtime < immutable):
            raise ApiError(403, f"{name} is immutable (vault setting immutable_days)", "forbidden")
        if token.role == "admin":
            return
        stone = self._existing("deleted/" + name.rpartition("/")[2])
        if stone is None:
            raise ApiError(403, f"{name} has no tombstone: forget it first", "forbidden")
        window = _days(settings, "soft_delete_days") * DAY
        if window and (stone.mtime is None or now - stone.mtime < window):
            raise ApiError(
                403, f"{name} is still in its soft-delete window (soft_delete_days)", "forbidden"
            )
