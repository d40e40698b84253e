"""Settings changes that lower a protection: one admin's word, or two admins' when two exist.

``config`` is MAC'd by the client with the vault key, so the server can neither write a new
one itself nor edit the one it is sent: it judges the plain settings in it.  A change that
raises or keeps ``immutable_days`` and ``soft_delete_days`` is stored at once.  A change that
lowers either is stored at once only when nobody else could approve it; otherwise it is kept as a
pending request (HTTP 202 with its id) until a *different* admin approves it (Azure Backup's
multi-user authorization).  Approving stores exactly the bytes that were sent, and only if
``config`` is still what the request was made against: an approval never reverts a change made
in between.

Admins are admin tokens and the dashboard's admin users, named ``token:ID`` and ``user:NAME``
(an :class:`Actor`).  A user and the tokens that user created on the dashboard answer to one
person (``Actor.person``): none of them approves a request another of them made, nor counts
as the second admin for it.  A token created with another token stands for itself (no person
is known behind either).
"""

from __future__ import annotations

import hashlib
import json
import os
import time

from strongroom.records import dataclass
from strongroom.server.auth import ApiError
from strongroom.server.catalog import Approval, Catalog, TokenRow

PROTECTIONS = ("immutable_days", "soft_delete_days")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for a change or decides on one."""

    id: str
    """``token:ID`` or ``user:NAME``: what the approvals table and the audit detail record."""
    person: str
    """Whom it answers to: the user for a user and for a token a user created, else ``id``."""


def token_actor(token: TokenRow) -> Actor:
    ident = f"token:{token.id}"
    maker = token.created_by or ""
    return Actor(ident, maker if maker.startswith("user:") else ident)


def user_actor(name: str) -> Actor:
    return Actor(f"user:{name}", f"user:{name}")


def actor_of(catalog: Catalog, ident: str) -> Actor:
    """The actor a stored ``requested_by`` names (a bare id: a token, as version 2 wrote)."""
    if ident.startswith("user:"):
        return user_actor(ident.removeprefix("user:"))
    token_id = ident.removeprefix("token:")
    row = catalog.token(token_id)
    return token_actor(row) if row is not None else Actor(f"token:{token_id}", f"token:{token_id}")


def approvers(catalog: Catalog, asker: Actor) -> list[str]:
    """The admins (tokens that can act, admin users) who could approve ``asker``'s request."""
    found = [user_actor(name) for name in catalog.admin_users()]
    for token_id in catalog.active_admins():
        row = catalog.token(token_id)
        if row is not None:
            found.append(token_actor(row))
    return [a.id for a in found if a.person != asker.person]


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
    catalog: Catalog, vault: str, asker: Actor, name: str, old: bytes, new: bytes
) -> None:
    """Return if ``new`` may be stored now; raise :class:`PendingApproval` if it must wait."""
    changes = lowered(old, new)
    if not changes:
        return
    if not approvers(catalog, asker):
        return  # the only admin: nobody could approve, and the issue asks for no approval then
    for row in catalog.approvals():  # a retried request is the same request
        same = row.vault == vault and row.data == new and row.requested_by == asker.id
        if same and row.state == "pending":
            raise PendingApproval(row)
    row = Approval(
        id=os.urandom(8).hex(),
        vault=vault,
        name=name,
        data=new,
        base_sha256=digest(old),
        summary=", ".join(changes),
        requested_by=asker.id,
        created=time.time(),
        decided_by=None,
        decided=None,
        state="pending",
    )
    catalog.add_approval(row)
    raise PendingApproval(row)


def pending(catalog: Catalog, approval_id: str, approver: Actor) -> Approval:
    """The pending request ``approver`` may approve (never its own person's)."""
    row = catalog.approval(approval_id)
    if row is None:
        raise ApiError(404, f"no approval request {approval_id}", "no-approval")
    if row.state != "pending":
        raise ApiError(409, f"approval request {approval_id} is {row.state}", "exists")
    asker = actor_of(catalog, row.requested_by)
    if asker.id == approver.id:
        raise ApiError(403, "an admin cannot approve its own request", "forbidden")
    if asker.person == approver.person:
        raise ApiError(403, _same_person(asker, approver), "forbidden")
    return row


def _same_person(asker: Actor, approver: Actor) -> str:
    if approver.id == approver.person:  # a user, about a token of their own
        return "the request was made with a token you created: another admin must approve it"
    return (
        f"this token was created by {approver.person}, who made the request "
        f"({asker.id}): another admin must approve it"
    )


def check_signed(old: bytes, new: bytes, wanted: dict[str, int]) -> None:
    """A config an agent signed for a dashboard request must be ``old`` with exactly the
    ``wanted`` protections changed: the server cannot check its MAC, so it checks the rest."""
    before, after = settings_of(old, "the stored config"), settings_of(new, "the signed config")
    outside = json.loads(old), json.loads(new)
    for doc in outside:
        doc.pop("settings", None)
        doc.pop("mac", None)
    if after != {**before, **wanted} or outside[0] != outside[1]:
        raise ApiError(502, "the agent's signed config is not the change asked for", "agent-error")
