"""Dashboard users (argon2id password hashes) and server-side sessions in the catalog."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from strongroom.records import dataclass
from strongroom.server.auth import ApiError
from strongroom.server.catalog import Catalog

USER_ROLES = ("admin", "operator", "viewer")
SESSION_HOURS = 12.0
MAX_PASSWORD = 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_HASHER = PasswordHasher()  # argon2id with the library's current defaults
_DUMMY = _HASHER.hash("not a password")
"""Verified against for unknown users, so a login takes as long whether the user exists."""
_HASHING = threading.BoundedSemaphore(2)
"""Each hash takes 64 MiB and tens of milliseconds: a flood of logins waits here instead of
filling the server's memory from every worker thread at once."""


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    role: str
    csrf: str


def add_user(catalog: Catalog, name: str, role: str, password: str, by: str) -> None:
    if not _NAME.fullmatch(name):
        raise ApiError(400, f"invalid user name {name!r}: letters, digits, '.', '_', '@', '-'")
    if role not in USER_ROLES:
        raise ApiError(400, f"unknown role {role!r}: one of {', '.join(USER_ROLES)}")
    if not 8 <= len(password) <= MAX_PASSWORD:
        raise ApiError(400, f"the password must be 8 to {MAX_PASSWORD} characters")
    with _HASHING:
        hashed = _HASHER.hash(password)
    with catalog.tx() as db:
        cur = db.execute(
            "INSERT INTO users VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (name, role, hashed, time.time(), by),
        )
        if cur.rowcount != 1:
            raise ApiError(409, f"user {name!r} exists already", "exists")


def login(catalog: Catalog, name: str, password: str) -> tuple[str, Session]:
    """A new session id (for the cookie) and the session, if the password is right."""
    with catalog.read() as db:
        row = db.execute("SELECT role, password FROM users WHERE name = ?", (name,)).fetchone()
    stored = str(row[1]) if row else _DUMMY
    try:
        with _HASHING:
            _HASHER.verify(stored, password[:MAX_PASSWORD])
    except (VerificationError, InvalidHashError):
        row = None
    if row is None:
        raise ApiError(401, "wrong user name or password", "unauthenticated")
    sid, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.time()
    with catalog.tx() as db:
        db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
        db.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
            (_digest(sid), name, csrf, now, now + SESSION_HOURS * 3600),
        )
    return sid, Session(name, str(row[0]), csrf)


def session(catalog: Catalog, sid: str | None) -> Session | None:
    """The live session of a cookie's id, with the user's current role."""
    if not sid or len(sid) > 100:
        return None
    with catalog.read() as db:
        row = db.execute(
            "SELECT s.username, u.role, s.csrf FROM sessions s JOIN users u ON u.name = s.username"
            " WHERE s.id_sha256 = ? AND s.expires > ?",
            (_digest(sid), time.time()),
        ).fetchone()
    return Session(str(row[0]), str(row[1]), str(row[2])) if row else None


def logout(catalog: Catalog, sid: str) -> None:
    with catalog.tx() as db:
        db.execute("DELETE FROM sessions WHERE id_sha256 = ?", (_digest(sid),))


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()
