"""Tokens and roles.

A token is ``srt_<16 hex id>_<base64url of 32 random bytes>``.  The catalog keeps the id, the
role and SHA-256 of the secret only: a copy of the catalog lets nobody act as a token.  A
plain hash (not a password KDF) is enough because the secret is 256 random bits, never a
guessable word.  Comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time

from strongroom.errors import ServerError
from strongroom.records import dataclass
from strongroom.server.catalog import Catalog, TokenRow

ROLES = ("backup", "restore", "maintenance", "admin", "enrol")
DATA_ROLES = ROLES[:4]
"""Roles that may touch vaults (an enrol token only registers agents)."""
TOKEN_PREFIX = "srt_"
_TOKEN = re.compile(r"^srt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
DAY = 86400.0


class ApiError(ServerError):
    """A request the server refuses: becomes an HTTP status, a kind and a one-line reason."""

    def __init__(
        self, status: int, reason: str, kind: str = "refused", *, token_id: str | None = None
    ) -> None:
        super().__init__(reason)
        self.status, self.reason, self.kind = status, reason, kind
        self.token_id = token_id
        """The id a refused token claimed (for the audit log), when it had one."""


@dataclass(frozen=True, slots=True)
class NewToken:
    row: TokenRow
    secret: str
    """The whole token as the client presents it; shown once, never stored."""


def new_token(
    role: str,
    *,
    sources: list[str] | None = None,
    expires_days: float | None = None,
    label: str = "",
    created_by: str | None = None,
) -> NewToken:
    if role not in ROLES:
        raise ApiError(400, f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if expires_days is not None and not expires_days > 0:
        raise ApiError(400, "expires must be a positive number of days")
    token_id = os.urandom(8).hex()
    secret = os.urandom(32)
    now = time.time()
    row = TokenRow(
        id=token_id,
        role=role,
        secret_sha256=hashlib.sha256(secret).digest(),
        sources=list(sources or []),
        label=label,
        created=now,
        created_by=created_by,
        expires=None if expires_days is None else now + expires_days * DAY,
        revoked=None,
    )
    text = base64.urlsafe_b64encode(secret).decode().rstrip("=")
    return NewToken(row, f"{TOKEN_PREFIX}{token_id}_{text}")


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer ...`` header."""
    if not header:
        raise ApiError(401, "no token: send Authorization: Bearer <token>", "unauthenticated")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(401, "malformed Authorization header: use Bearer <token>", "unauthenticated")
    return value.strip()


def authenticate(catalog: Catalog, token: str, now: float | None = None) -> TokenRow:
    """The token's catalog row, if the token is well-formed, known, unrevoked and unexpired."""
    m = _TOKEN.match(token)
    if m is None:
        raise ApiError(401, "malformed token", "unauthenticated")
    token_id, text = m.groups()
    try:
        secret = base64.urlsafe_b64decode(text + "=")
    except ValueError:
        raise ApiError(401, "malformed token", "unauthenticated") from None
    row = catalog.token(token_id)
    reason = None
    if row is None or not hmac.compare_digest(row.secret_sha256, hashlib.sha256(secret).digest()):
        reason = f"invalid token {token_id}"
    elif row.revoked is not None:
        reason = f"token {token_id} was revoked"
    elif row.expires is not None and (now or time.time()) >= row.expires:
        reason = f"token {token_id} has expired"
    if reason is not None or row is None:
        raise ApiError(401, reason or "invalid token", "unauthenticated", token_id=token_id)
    return row


def require_role(row: TokenRow, roles: tuple[str, ...], what: str) -> None:
    if row.role not in roles:
        raise ApiError(403, f"a {row.role} token cannot {what}", "forbidden")
