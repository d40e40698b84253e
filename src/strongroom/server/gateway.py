"""The storage gateway: what a token of each role may do to each kind of vault object.

The server never holds a vault's keys, so it judges objects by what it can see without them:
the name (one of the kinds of ``docs/format.md`` §1, nothing else), the bytes' BLAKE3 for
content-named objects, whether the name exists, the object's age (storage mtime), the plain
settings in ``config`` and, for locks, which token wrote them.  Names are written once: a put
of an existing name is accepted only with identical bytes (idempotent), except for locks
(rewritten by their holder) and ``config`` (an admin's settings change; lowering a protection
may need a second admin, see :mod:`strongroom.server.approvals`).  Tokens scoped to sources
see and write only their sources' objects (:mod:`strongroom.server.scoping`).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence

from strongroom.errors import ObjectNotFound, PermanentStorageError
from strongroom.records import dataclass
from strongroom.server import approvals
from strongroom.server.approvals import days, settings_of
from strongroom.server.auth import DAY, ApiError
from strongroom.server.catalog import Approval, Catalog, TokenRow
from strongroom.server.control import grants
from strongroom.server.scoping import Scope
from strongroom.server.upload import StoreStream
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


class VaultGateway:
    """One vault's backend with the server's rules in front of it (thread-safe)."""

    def __init__(self, name: str, backend: Backend, catalog: Catalog) -> None:
        self.name, self.backend, self.catalog = name, backend, catalog
        self.scope = Scope(name, catalog)
        # Check-then-put of one name must not interleave within this process; 64 stripes
        # keep unrelated names from waiting on each other.
        self._stripes = [threading.Lock() for _ in range(64)]

    def _lock_for(self, name: str) -> threading.Lock:
        return self._stripes[hash(name) % len(self._stripes)]

    # --- reads (every role) ----------------------------------------------------------------

    def get(self, token: TokenRow, name: str, offset: int | None, length: int | None) -> bytes:
        self.scope.check_read(token, kind_of(name).name, name)
        if offset is None and length is None:
            return self.backend.get(name)
        if offset is None or length is None or offset < 0 or length < 0:
            raise ApiError(400, "give both offset and length, neither negative")
        return self.backend.get_range(name, offset, length)

    def stat(self, token: TokenRow, name: str) -> ObjectInfo:
        self.scope.check_read(token, kind_of(name).name, name)
        return self.backend.stat(name)

    def list(self, token: TokenRow, prefix: str) -> list[tuple[ObjectInfo, str | None, list[str]]]:
        """The objects under ``prefix`` the token may see, with each point's source."""
        try:
            check_prefix(prefix)
        except PermanentStorageError as exc:
            raise ApiError(400, str(exc)) from None
        return self.scope.visible(token, list(self.backend.list(prefix)))

    # --- writes ----------------------------------------------------------------------------

    def check_put(
        self, token: TokenRow, name: str, source: str | None, named: Sequence[str] | None = None
    ) -> Kind:
        """Refuse a put the token may not make, before its body is read."""
        kind = kind_of(name)
        if token.role not in kind.create and not self._granted(token, kind, name):
            what = f"a {token.role} token cannot write {kind.name} objects"
            raise ApiError(403, what, "forbidden")
        if kind.name == "points" and source is not None:
            self.scope.check_point_put(token, name, source)
        self.scope.check_named(token, kind.name, list(named or ()))
        return kind

    def open_stream(self, kind: Kind) -> StoreStream | None:
        """A piece-by-piece writer for a pack, where the backend has one (local folders)."""
        opener = getattr(self.backend, "open_stream", None)
        if kind.name != "data" or opener is None:
            return None
        stream: StoreStream = opener("data")
        return stream

    def put(
        self,
        token: TokenRow,
        name: str,
        data: bytes | bytearray,
        source: str | None = None,
        named: Sequence[str] | None = None,
    ) -> bool:
        """Store ``data`` under ``name``; True if created, False if it was there already.
        ``source`` is the source a point is committed for (required for new points);
        ``named`` the sources a maintenance client's pack or index object serves."""
        named = named or []
        kind = self.check_put(token, name, source, named)
        if kind.content_named and content_digest(data).hex() != name.rpartition("/")[2]:
            raise ApiError(400, f"the bytes sent for {name} do not hash to its name")

        def write() -> None:
            self.backend.put(name, data)

        return self._store(token, kind, name, (source, named), write, data)

    def put_streamed(
        self,
        token: TokenRow,
        name: str,
        stream: StoreStream,
        digest: bytes,
        named: Sequence[str] | None = None,
    ) -> bool:
        """Name a pack written to ``stream`` (its bytes hash to ``digest``), unless a pack of
        that name exists; the stream is committed or aborted either way."""
        named = named or []
        kind = self.check_put(token, name, None, named)
        try:
            if digest.hex() != name.rpartition("/")[2]:
                raise ApiError(400, f"the bytes sent for {name} do not hash to its name")
            return self._store(token, kind, name, (None, named), lambda: stream.commit(name), None)
        finally:
            stream.abort()  # idempotent: nothing left after a commit

    def _store(
        self,
        token: TokenRow,
        kind: Kind,
        name: str,
        sources: tuple[str | None, Sequence[str]],
        write: Callable[[], None],
        data: bytes | bytearray | None,
    ) -> bool:
        source, named = sources
        with self._lock_for(name):
            existing = self._existing(name)
            if existing is None and kind.name == "points" and source is None:
                self.scope.check_point_put(token, name, source)  # refuses: no source named
            # Recorded before the object is stored: a crash in between leaves a record of
            # nothing (never listed), not an object its owner cannot see.
            self.scope.record(token, kind.name, name, source, list(named))
            if existing is None:
                write()
                if kind.name == "locks":
                    self.catalog.set_lock_owner(self.name, name, token.id)
                return True
            if not kind.content_named:
                assert data is not None  # only content-named objects are streamed
                self._check_replace(token, kind, name, bytes(data))  # small: no pack
            return False

    def _granted(self, token: TokenRow, kind: Kind, name: str) -> bool:
        """A tombstone the control plane's retention granted this (agent's) token."""
        return kind.name == "deleted" and grants.granted(self.catalog, self.name, name, token)

    def approve(self, approver: approvals.Actor, approval_id: str) -> Approval:
        """Store the exact bytes of a pending settings change another admin asked for."""
        row = approvals.pending(self.catalog, approval_id, approver)
        with self._lock_for(row.name):
            current = self.backend.get(row.name)
            if approvals.digest(current) != row.base_sha256:
                self.catalog.decide(row.id, approver.id, "stale")
                raise ApiError(409, f"{row.name} changed since the request: ask again", "stale")
            approvals.lowered(current, row.data)  # still this vault's config
            if not self.catalog.decide(row.id, approver.id, "approved"):
                raise ApiError(409, f"approval request {row.id} was decided meanwhile", "exists")
            self.backend.put(row.name, row.data)
            if row.name == "config":  # its redundant copy mirrors it (docs/format.md §3.1)
                self.backend.put("config-copy", row.data)
        return row

    def change_config(self, asker: approvals.Actor, data: bytes, wanted: dict[str, int]) -> None:
        """A settings change asked for on the dashboard: ``data`` is the config an agent
        signed; it must change exactly the ``wanted`` protections. Stored now (with its
        copy) or raises :class:`approvals.PendingApproval`, as a client's put of ``config``."""
        with self._lock_for("config"):
            old = self.backend.get("config")
            approvals.check_signed(old, data, wanted)
            approvals.request_change(self.catalog, self.name, asker, "config", old, data)
            self.backend.put("config", data)
            self.backend.put("config-copy", data)

    def _existing(self, name: str) -> ObjectInfo | None:
        try:
            return self.backend.stat(name)
        except ObjectNotFound:
            return None

    def _check_replace(self, token: TokenRow, kind: Kind, name: str, data: bytes) -> None:
        """Accept a put of an existing name (rewriting it where allowed) or refuse it.
        (A content-named object is not replaced: the same bytes are stored already.)"""
        if kind.name == "locks":
            if token.role != "admin" and self.catalog.lock_owner(self.name, name) != token.id:
                raise ApiError(403, f"{name} is another token's lock", "forbidden")
            self.backend.put(name, data)
            return
        old = self.backend.get(name)
        if old == data:
            return
        if kind.name == "config":  # an admin's settings change (create is admin-only)
            asker = approvals.token_actor(token)
            approvals.request_change(self.catalog, self.name, asker, name, old, data)
            self.backend.put(name, data)
            return
        raise ApiError(409, f"{name} exists and objects are never replaced", "exists")

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
            self.scope.forget(kind.name, name)
            if kind.name == "locks":
                self.catalog.drop_lock_owner(self.name, name)

    def _check_point_delete(self, token: TokenRow, name: str) -> None:
        """Immutability binds every role; maintenance also waits out the soft-delete window
        (the point's tombstone must exist and be older than ``soft_delete_days``)."""
        settings = settings_of(self.backend.get("config"), "the stored config")
        now = time.time()
        info = self.backend.stat(name)
        immutable = days(settings, "immutable_days") * DAY
        if immutable and (info.mtime is None or now - info.mtime < immutable):
            raise ApiError(403, f"{name} is immutable (vault setting immutable_days)", "forbidden")
        if token.role == "admin":
            return
        stone = self._existing("deleted/" + name.rpartition("/")[2])
        if stone is None:
            raise ApiError(403, f"{name} has no tombstone: forget it first", "forbidden")
        window = days(settings, "soft_delete_days") * DAY
        if window and (stone.mtime is None or now - stone.mtime < window):
            raise ApiError(
                403, f"{name} is still in its soft-delete window (soft_delete_days)", "forbidden"
            )
