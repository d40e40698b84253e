"""The server's catalog: vaults, tokens, lock owners, object sources, pending approvals and the
audit log, in one SQLite file, or in PostgreSQL (``catalog_db``) for several servers sharing one.

WAL mode so that readers (token checks on every request) never wait for the audit log's
writers; ``synchronous=NORMAL`` because an audit row lost to a power cut is an acceptable
price for not syncing the disk on every request.  One connection behind a lock: every
statement is short, and the server runs its request handlers on a thread pool.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from strongroom.errors import ServerError
from strongroom.records import dataclass
from strongroom.server.catalog_db import (
    CatalogError,
    Db,
    catalog_url,
    open_postgres,
    open_sqlite,
)
from strongroom.server.control.prune_schema import SCHEMA_PRUNE
from strongroom.server.control.schema import SCHEMA_3
from strongroom.server.control.upkeep_schema import SCHEMA_UPKEEP
from strongroom.server.pointmeta_schema import SCHEMA_6, SCHEMA_REDUCTION
from strongroom.server.web.schema import SCHEMA_4
from strongroom.server.web.usage_schema import SCHEMA_USAGE

CATALOG_FILE = "catalog.sqlite"
SCHEMA_VERSION = 9

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vaults (
    name TEXT PRIMARY KEY, location TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, role TEXT NOT NULL, secret_sha256 BLOB NOT NULL,
    sources TEXT NOT NULL, label TEXT NOT NULL, created REAL NOT NULL,
    created_by TEXT, expires REAL, revoked REAL);
CREATE TABLE IF NOT EXISTS lock_owners (
    vault TEXT NOT NULL, name TEXT NOT NULL, token TEXT NOT NULL,
    PRIMARY KEY (vault, name));
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, token TEXT, role TEXT, client TEXT,
    method TEXT NOT NULL, vault TEXT, action TEXT NOT NULL, object TEXT,
    status INTEGER NOT NULL, detail TEXT NOT NULL);
"""
# Version 2: the sources an object was stored for (a point's source; the uploading token's
# sources for a pack or index object), and settings changes waiting for a second admin.
_SCHEMA_2 = """
CREATE TABLE IF NOT EXISTS object_sources (
    vault TEXT NOT NULL, name TEXT NOT NULL, source TEXT NOT NULL,
    PRIMARY KEY (vault, name, source));
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY, vault TEXT NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL,
    base_sha256 TEXT NOT NULL, summary TEXT NOT NULL, requested_by TEXT NOT NULL,
    created REAL NOT NULL, decided_by TEXT, decided REAL, state TEXT NOT NULL);
"""
# Each version's tables, in order: a catalog of version N gets the scripts after its own.
_MIGRATIONS = (
    _SCHEMA,
    _SCHEMA_2,
    SCHEMA_3,
    SCHEMA_4,
    SCHEMA_USAGE,
    SCHEMA_6,
    SCHEMA_UPKEEP,
    SCHEMA_PRUNE,
    SCHEMA_REDUCTION,
)


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: str
    role: str
    secret_sha256: bytes
    sources: list[str]
    label: str
    created: float
    created_by: str | None
    expires: float | None
    revoked: float | None

    def public(self) -> dict[str, object]:
        """Everything but the secret's hash, for listings."""
        return {
            "id": self.id,
            "role": self.role,
            "sources": self.sources,
            "label": self.label,
            "created": self.created,
            "created_by": self.created_by,
            "expires": self.expires,
            "revoked": self.revoked,
        }


@dataclass(frozen=True, slots=True)
class Approval:
    """An admin's settings change that lowers a protection, waiting for a second admin."""

    id: str
    vault: str
    name: str
    data: bytes
    """The exact bytes to store once approved (the client MAC'd them with the vault key)."""
    base_sha256: str
    """SHA-256 of the object the change was made against: approving applies it only then."""
    summary: str
    requested_by: str
    created: float
    decided_by: str | None
    decided: float | None
    state: str
    """pending, approved, rejected or stale."""

    def public(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in self.__slots__ if f not in ("data", "base_sha256")}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    time: float
    token: str | None
    role: str | None
    client: str | None
    method: str
    vault: str | None
    action: str
    target: str | None
    """The object, token or prefix the request named."""
    status: int
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in self.__slots__}


class Catalog:
    """The catalog in ``data_dir`` (or the PostgreSQL database its config names, or ``url``);
    :meth:`create` makes a new one, the constructor opens."""

    def __init__(self, data_dir: Path, *, create: bool = False, url: str | None = None) -> None:
        url = url or catalog_url(data_dir)
        self.path = data_dir / CATALOG_FILE
        self.where = str(self.path) if url is None else "the PostgreSQL catalog"
        self.created = False
        """True if this call created the catalog (PostgreSQL: a server may join one)."""
        if url is None:
            self._db = self._open_sqlite(data_dir, create)
        else:
            self._db = open_postgres(url)
        try:
            if url is not None:
                create = (
                    create
                    and not self._db.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]
                )
            if create:
                self._db.script("".join(_MIGRATIONS))
                self.set_meta("schema", str(SCHEMA_VERSION))
                self.set_meta("storage_root", str(data_dir / "vaults"))
                self.created = True
            else:
                self._migrate()
        except CatalogError as exc:
            self._db.close()
            raise ServerError(f"cannot open {self.where}: {exc}") from None
        self._lock = threading.Lock()

    def _open_sqlite(self, data_dir: Path, create: bool) -> Db:
        if not create and not self.path.is_file():
            raise ServerError(
                f"no server catalog in {data_dir}: run `strongroom server init --data {data_dir}`"
            )
        if create and self.path.exists():
            raise ServerError(f"{data_dir} already holds a server catalog")
        try:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ServerError(f"cannot open the server catalog {self.path}: {exc}") from None
        return open_sqlite(self.path)

    @property
    def postgres(self) -> bool:
        return self._db.postgres

    def _migrate(self) -> None:
        """Bring an older catalog up to this version: the tables of the versions after it."""
        found = self.meta("schema")
        if found is None or not found.isdigit() or not 1 <= int(found) <= SCHEMA_VERSION:
            raise ServerError(f"{self.where}: unsupported catalog schema")
        if int(found) < SCHEMA_VERSION:
            self._db.script("".join(_MIGRATIONS[int(found) :]))
            self.set_meta("schema", str(SCHEMA_VERSION))

    @contextmanager
    def tx(self) -> Iterator[Db]:
        """A write transaction (for the control plane's store)."""
        with self._tx() as db:
            yield db

    @contextmanager
    def read(self) -> Iterator[Db]:
        """The connection for reads, under the catalog's lock."""
        with self._lock:
            yield self._db

    @contextmanager
    def _tx(self) -> Iterator[Db]:
        with self._lock:
            self._db.begin()
            try:
                yield self._db
                self._db.end(commit=True)
            except BaseException:
                with suppress(CatalogError):  # a lost connection has nothing to roll back
                    self._db.end(commit=False)
                raise

    def close(self) -> None:
        self._db.close()

    # --- meta and vaults -------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def vault_location(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT location FROM vaults WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else None

    def add_vault(self, name: str, location: str) -> bool:
        """Register ``name``; False if it exists already."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO vaults VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (name, location, time.time()),
            )
            return cur.rowcount == 1

    def vaults(self) -> list[tuple[str, str]]:
        with self._lock:
            rows = self._db.execute("SELECT name, location FROM vaults ORDER BY name").fetchall()
        return [(str(n), str(loc)) for n, loc in rows]

    # --- tokens ----------------------------------------------------------------------------

    def add_token(self, row: TokenRow) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.role,
                    row.secret_sha256,
                    json.dumps(row.sources),
                    row.label,
                    row.created,
                    row.created_by,
                    row.expires,
                    row.revoked,
                ),
            )

    def token(self, token_id: str) -> TokenRow | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return _token_row(row) if row else None

    def tokens(self) -> list[TokenRow]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM tokens ORDER BY created").fetchall()
        return [_token_row(r) for r in rows]

    def revoke_token(self, token_id: str) -> bool:
        """Revoke; False if there is no such token (revoking twice is fine)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE tokens SET revoked = coalesce(revoked, ?) WHERE id = ?",
                (time.time(), token_id),
            )
            return cur.rowcount == 1

    # --- lock owners -----------------------------------------------------------------------

    def lock_owner(self, vault: str, name: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT token FROM lock_owners WHERE vault = ? AND name = ?", (vault, name)
            ).fetchone()
        return str(row[0]) if row else None

    def set_lock_owner(self, vault: str, name: str, token: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO lock_owners VALUES (?, ?, ?)"
                " ON CONFLICT (vault, name) DO UPDATE SET token = excluded.token",
                (vault, name, token),
            )

    def drop_lock_owner(self, vault: str, name: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM lock_owners WHERE vault = ? AND name = ?", (vault, name))

    def active_admins(self, now: float | None = None) -> list[str]:
        """Ids of the admin tokens that can act now (neither revoked nor expired)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM tokens WHERE role = 'admin' AND revoked IS NULL"
                " AND (expires IS NULL OR expires > ?)",
                (now or time.time(),),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def admin_users(self) -> list[str]:
        """Names of the dashboard's admin users (they approve settings changes too)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name FROM users WHERE role = 'admin' ORDER BY name"
            ).fetchall()
        return [str(r[0]) for r in rows]

    # --- object sources --------------------------------------------------------------------

    def add_sources(self, vault: str, name: str, sources: list[str]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT INTO object_sources VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [(vault, name, s) for s in sources],
            )

    def sources_of(self, vault: str, name: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT source FROM object_sources WHERE vault = ? AND name = ? ORDER BY source",
                (vault, name),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def sources_under(self, vault: str, prefix: str) -> dict[str, list[str]]:
        """Every recorded object under ``prefix`` and its sources."""
        found: dict[str, list[str]] = {}
        with self._lock:
            rows = self._db.execute(
                "SELECT name, source FROM object_sources WHERE vault = ?"
                " AND substr(name, 1, ?) = ? ORDER BY name, source",
                (vault, len(prefix), prefix),
            ).fetchall()
        for name, source in rows:
            found.setdefault(str(name), []).append(str(source))
        return found

    def drop_sources(self, vault: str, name: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM object_sources WHERE vault = ? AND name = ?", (vault, name))

    # --- approvals -------------------------------------------------------------------------

    def add_approval(self, row: Approval) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO approvals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.vault,
                    row.name,
                    row.data,
                    row.base_sha256,
                    row.summary,
                    row.requested_by,
                    row.created,
                    row.decided_by,
                    row.decided,
                    row.state,
                ),
            )

    def approval(self, approval_id: str) -> Approval | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM approvals WHERE id = ?", (approval_id,)
            ).fetchone()
        return _approval(row) if row else None

    def approvals(self) -> list[Approval]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM approvals ORDER BY created").fetchall()
        return [_approval(r) for r in rows]

    def decide(self, approval_id: str, by: str, state: str) -> bool:
        """Mark a pending request ``state``; False if it is no longer pending."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE approvals SET state = ?, decided_by = ?, decided = ?"
                " WHERE id = ? AND state = 'pending'",
                (state, by, time.time(), approval_id),
            )
            return cur.rowcount == 1

    # --- audit -----------------------------------------------------------------------------

    def audit(self, entry: AuditEntry) -> None:
        self.audit_many([entry])

    def audit_many(self, entries: list[AuditEntry]) -> None:
        """Rows of the audit log, in one transaction."""
        if not entries:
            return
        with self._tx() as db:
            db.executemany(
                "INSERT INTO audit (time, token, role, client, method, vault, action, object,"
                " status, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (e.time, e.token, e.role, e.client, e.method, e.vault, e.action, e.target,
                     e.status, e.detail)
                    for e in entries
                ],
            )  # fmt: skip

    def audit_log(self, limit: int = 1000) -> list[AuditEntry]:
        """The newest ``limit`` entries, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT time, token, role, client, method, vault, action, object, status, detail"
                " FROM audit ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [AuditEntry(*r) for r in reversed(rows)]


def _token_row(r: tuple[object, ...]) -> TokenRow:
    sources = json.loads(str(r[3]))
    return TokenRow(
        id=str(r[0]),
        role=str(r[1]),
        secret_sha256=bytes(r[2]),  # type: ignore[call-overload]
        sources=[str(s) for s in sources],
        label=str(r[4]),
        created=float(r[5]),  # type: ignore[arg-type]
        created_by=None if r[6] is None else str(r[6]),
        expires=None if r[7] is None else float(r[7]),  # type: ignore[arg-type]
        revoked=None if r[8] is None else float(r[8]),  # type: ignore[arg-type]
    )


def _approval(r: tuple[object, ...]) -> Approval:
    return Approval(
        id=str(r[0]),
        vault=str(r[1]),
        name=str(r[2]),
        data=bytes(r[3]),  # type: ignore[call-overload]
        base_sha256=str(r[4]),
        summary=str(r[5]),
        requested_by=str(r[6]),
        created=float(r[7]),  # type: ignore[arg-type]
        decided_by=None if r[8] is None else str(r[8]),
        decided=None if r[9] is None else float(r[9]),  # type: ignore[arg-type]
        state=str(r[10]),
    )
