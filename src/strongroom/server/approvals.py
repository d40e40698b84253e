"""Settings changes that lower a protection: one admin's word, or two admins' when two exist.

``config`` is MAC'd by the client with the vault key, so the server can neither write a new
one itself nor edit the one it is sent: it judges the plain settings in it.  A change that
raises or keeps ``immutable_days`` and ``soft_delete_days`` is stored at once.  A change that
lowers either is stored at once only when the requesting admin is the only admin token that can
act; otherwise it is kept as a pending request (HTTP 202 with its id) until a *different* admin
approves it (Azure Backup's multi-user authorization).  Approving stores exactly the bytes
that were sent, and only if ``config`` is still what the request was made against: an approval
never reverts a change made in between.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

from strongroom.server.auth import ApiError
from strongroom.server.catalog import Approval, Catalog, TokenRow

PROTECTIONS = ("immutable_days", "soft_delete_days")


class PendingApproval(Exception):
    """The change was recorded and waits for a second admin: a result, not an error (the
    route turns it into HTTP 202), so it is no StrongroomError."""

    def __init__(self, approval: Approval) -> None:
        super().__init__(approval.id)
        self.approval = approval


def settings_of(raw: bytes, what: str) -> dict[str, object]:
    """The vault id and plain settings of a ``config`` object."""
    try:
        doc = json.loads(raw)
        settings = doc["settings"]
        if not isinstance(settings, dict) or not isinstance(doc.get("id"), str):
            raise TypeError
        return {"id": doc["id"], **settings}
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, f"{what} is not a strongroom vault config") from None


def days(settings: dict[str, object], key: str) -> float:
    value = settings.get(key, 0)
    return float(value) if isinstance(value, int | float) else 0.0


def lowered(old: bytes, new: bytes) -> list[str]:
    """What the change lowers, as ``name old -> new``; refuses another vault's config."""
    before, after = settings_of(old, "the stored config"), settings_of(new, "the new config")
    if after["id"] != before["id"]:
        raise ApiError(400, "a config of another vault cannot replace this one")
    return [
        f"{key} {days(before, key):g} -> {days(after, key):g}"
        for key in PROTECTIONS
        if days(after, key) < days(before, key)
    ]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def request_change(
    catalog: Catalog, vault: str, token: TokenRow, name: str, old: bytes, new: bytes
) -> None:
    """Return if ``new`` may be stored now; raise :class:`PendingApproval` if it must wait."""
    changes = lowered(old, new)
    if not changes:
        return
    if not [a for a in catalog.active_admins() if a != token.id]:
        return  # the only admin: nobody could approve, and the issue asks for no approval then
    for row in catalog.approvals():  # a retried request is the same request
        same = row.vault == vault and row.data == new and row.requested_by == token.id
        if same and row.state == "pending":
            raise PendingApproval(row)
    row = Approval(
        id=os.urandom(8).hex(),
        vault=vault,
        name=name,
        data=new,
        base_sha256=digest(old),
        summary=", ".join(changes),
        requested_by=token.id,
        created=time.time(),
        decided_by=None,
        decided=None,
        state="pending",
    )
    catalog.add_approval(row)
    raise PendingApproval(row)


def pending(catalog: Catalog, approval_id: str, token: TokenRow) -> Approval:
    """The pending request ``token`` may approve (never its own)."""
    row = catalog.approval(approval_id)
    if row is None:
        raise ApiError(404, f"no approval request {approval_id}", "no-approval")
    if row.state != "pending":
        raise ApiError(409, f"approval request {approval_id} is {row.state}", "exists")
    if row.requested_by == token.id:
        raise ApiError(403, "an admin cannot approve its own request", "forbidden")
    return row
