"""The catalog's database connection: SQLite (one file in the data folder) or PostgreSQL (a
``postgresql://`` URL, shared by several server processes).

The catalog's SQL is written once, for SQLite, in the subset both engines take (``ON CONFLICT``
upserts, no ``AUTOINCREMENT``, no ``RETURNING``); :class:`Db` adapts it to PostgreSQL: ``%s``
placeholders, 64-bit integers and doubles in the schema, ``BIGSERIAL`` ids.  Row locks
(``SELECT ... FOR UPDATE [SKIP LOCKED]``) matter only on PostgreSQL, where transactions of
other servers run at the same time; SQLite's ``BEGIN IMMEDIATE`` serializes writers already,
so the lock clause is dropped there.  psycopg is imported only for a PostgreSQL catalog.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from strongroom.errors import ServerError

CONFIG_FILE = "server.json"
"""In the data folder: ``{"catalog": "postgresql://..."}``; absent for a SQLite catalog."""

_LOCKING = re.compile(r"\s+FOR UPDATE(\s+OF\s+\w+)?(\s+SKIP LOCKED)?\s*$")
_PG_TYPES = (
    (re.compile(r"\bINTEGER PRIMARY KEY\b"), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    # SQLite's implicit rowid keeps insertion order (a job's log lines); PostgreSQL needs one
    (re.compile(r"(CREATE TABLE IF NOT EXISTS job_log \()"), r"\1rowid BIGSERIAL, "),
)


class CatalogError(ServerError):
    """The catalog's database failed (unreachable, or a statement failed)."""


class Conflict(CatalogError):
    """A row with that key exists already."""


class Rows(Protocol):
    """What both drivers' cursors give."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Db:
    """One connection, with the statements of :mod:`catalog` adapted to its engine."""

    def __init__(
        self,
        conn: Any,
        *,
        postgres: bool,
        errors: tuple[type[Exception], ...],
        url: str | None = None,
    ) -> None:
        self._conn, self.postgres, self._url = conn, postgres, url
        self._integrity: type[Exception] = errors[0]
        self._error: type[Exception] = errors[1]
        self._in_tx = False

    def execute(self, sql: str, args: Sequence[object] = ()) -> Rows:
        self._reconnect()
        try:
            return self._conn.execute(self._sql(sql), tuple(args))  # type: ignore[no-any-return]
        except self._integrity as exc:
            raise Conflict(f"catalog: {exc}") from None
        except self._error as exc:
            raise CatalogError(f"catalog database: {str(exc).strip()}") from None

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        batch = [tuple(r) for r in rows]
        if not batch:
            return
        try:
            if self.postgres:
                self._conn.cursor().executemany(self._sql(sql), batch)
            else:
                self._conn.executemany(self._sql(sql), batch)
        except self._integrity as exc:
            raise Conflict(f"catalog: {exc}") from None
        except self._error as exc:
            raise CatalogError(f"catalog database: {str(exc).strip()}") from None

    def script(self, schema: str) -> None:
        """Create tables (statements separated by ``;``, no parameters)."""
        for statement in schema.split(";"):
            if statement.strip():
                self.execute(_pg_schema(statement) if self.postgres else statement)

    def begin(self) -> None:
        self.execute("BEGIN" if self.postgres else "BEGIN IMMEDIATE")
        self._in_tx = True

    def end(self, commit: bool) -> None:
        try:  # still in the transaction: a broken connection fails the COMMIT, no reconnect
            self.execute("COMMIT" if commit else "ROLLBACK")
        finally:
            self._in_tx = False

    def _reconnect(self) -> None:
        """A new PostgreSQL connection after the old one broke (a database restart, a
        network cut), between transactions only: a broken transaction fails as a whole."""
        if self._url is None or self._in_tx or not self._conn.closed:
            return
        self._conn = open_postgres(self._url)._conn

    def close(self) -> None:
        self._conn.close()

    def _sql(self, sql: str) -> str:
        return _pg_sql(sql) if self.postgres else _LOCKING.sub("", sql)


@lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


def _pg_schema(statement: str) -> str:
    for pattern, replacement in _PG_TYPES:
        statement = pattern.sub(replacement, statement)
    return statement


def catalog_url(data_dir: Path) -> str | None:
    """The PostgreSQL URL the data folder's config names, if any."""
    path = data_dir / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ServerError(f"cannot read {path}: {exc}") from None
    url = doc.get("catalog") if isinstance(doc, dict) else None
    if not isinstance(url, str) or not is_postgres(url):
        raise ServerError(f'{path}: expected {{"catalog": "postgresql://..."}}')
    return url


def write_config(data_dir: Path, url: str) -> None:
    """Record the catalog URL (it may hold a password: readable by the owner only)."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / CONFIG_FILE
    path.touch(mode=0o600)
    path.write_text(json.dumps({"catalog": url}) + "\n")


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def open_sqlite(path: Path) -> Db:
    try:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
    except sqlite3.Error as exc:
        raise CatalogError(f"cannot open the server catalog {path}: {exc}") from None
    return Db(conn, postgres=False, errors=(sqlite3.IntegrityError, sqlite3.Error))


def open_postgres(url: str) -> Db:
    try:
        import psycopg
    except ImportError:
        raise ServerError(
            "a PostgreSQL catalog needs psycopg: pip install 'strongroom[postgres]'"
        ) from None
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise CatalogError(f"cannot reach the catalog database: {str(exc).strip()}") from None
    return Db(conn, postgres=True, errors=(psycopg.IntegrityError, psycopg.Error), url=url)
