"""Changing a policy or a protected item after it was created (the dashboard's edit forms).

A policy's new schedule moves the next run of every item that follows it; an item's new
machine, paths or policy take effect from its next run.  Its kind and source stay: its
points are committed under its name, whatever else changes.  The machines' tokens are
re-scoped (the old machine loses the item's source, the new one gains it)."""

from __future__ import annotations

import json

from strongroom.server.auth import ApiError
from strongroom.server.catalog import Catalog
from strongroom.server.control.plane import next_run
from strongroom.server.control.store import Policy, item_in, rescope


def update_policy(catalog: Catalog, policy: Policy, now: float) -> None:
    """Replace the policy of that name (its creation time stays)."""
    policy.check()
    columns = [c for c in Policy.__slots__ if c not in ("name", "created")]
    values = [getattr(policy, c) for c in columns]
    following = next_run(policy, now)
    with catalog.tx() as db:
        cur = db.execute(
            f"UPDATE policies SET {', '.join(c + ' = ?' for c in columns)} WHERE name = ?",
            (*values, policy.name),
        )
        if cur.rowcount != 1:
            raise ApiError(404, f"no policy {policy.name!r}", "no-policy")
        db.execute("UPDATE items SET next_run = ? WHERE policy = ?", (following, policy.name))


def update_item(
    catalog: Catalog,
    name: str,
    machine: str,
    targets: list[str],
    excludes: list[str],
    policy: str,
    now: float,
) -> None:
    """Give the item ``name`` a machine, paths and policy; a new policy sets its next run."""
    if not targets or any(not t or "\0" in t for t in targets):
        raise ApiError(400, "an item needs at least one path, domain or image")
    with catalog.tx() as db:
        item = item_in(db, name)
        if item is None:
            raise ApiError(404, f"no item {name!r}", "no-item")
        cols = ", ".join(Policy.__slots__)
        row = db.execute(f"SELECT {cols} FROM policies WHERE name = ?", (policy,)).fetchone()
        if row is None:
            raise ApiError(404, f"no policy {policy!r}", "no-policy")
        token = db.execute("SELECT token FROM machines WHERE name = ?", (machine,)).fetchone()
        if token is None:
            raise ApiError(404, f"no machine {machine!r}: register its agent first", "no-machine")
        following = item.next_run if policy == item.policy else next_run(Policy(*row), now)
        db.execute(
            "UPDATE items SET machine = ?, targets = ?, excludes = ?, policy = ?, next_run = ?"
            " WHERE name = ?",
            (machine, json.dumps(targets), json.dumps(excludes), policy, following, name),
        )
        rescope(db, machine, str(token[0]))
        if item.machine != machine:
            old = db.execute("SELECT token FROM machines WHERE name = ?", (item.machine,))
            found = old.fetchone()
            if found is not None:
                rescope(db, item.machine, str(found[0]))
