"""Retention decided by the server, carried out by the agent.

The server holds no vault key, and a tombstone (``deleted/POINT``, docs/format.md §13) is
sealed with the point key: the server cannot write one.  It can decide which points to
forget, though: its catalog records every point's source (``server/scoping.py``) and the
storage gives each point's time (its mtime, the end of its backup).  So after a backup
succeeds, the server applies the policy's keep rules to the item's source's points, grants
the machine's token the right to write exactly those tombstones, and queues a retention
job; the agent (which holds the passphrase) seals and writes them.  A backup token can
write a tombstone only while such a grant exists: a stolen agent token still cannot forget
anything the policy keeps.  Prune (deleting forgotten points and their data) needs a
maintenance token and the key: it is not the agent's to run.

The keep rules are ``strongroom forget``'s own planner (:func:`strongroom.vault.retention.
keep_reasons`, restic's rules), over the points' storage times in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

from strongroom.server.catalog import Catalog, TokenRow
from strongroom.server.control.store import Policy
from strongroom.server.vaults import VaultRegistry
from strongroom.storage.backend import ObjectInfo
from strongroom.vault.retention import KeepPolicy, keep_reasons


def has_rules(policy: Policy) -> bool:
    return any(policy.keep())


def keep_policy(policy: Policy) -> KeepPolicy:
    last, hourly, daily, weekly, monthly, yearly = policy.keep()
    return KeepPolicy(last, hourly, daily, weekly, monthly, yearly)


def plan(points: list[tuple[str, float]], rule: KeepPolicy) -> list[tuple[str, float, list[str]]]:
    """Each point (id, unix time), newest first, with the reasons ``forget``'s planner gives
    for keeping it (none: it would be forgotten)."""
    newest_first = sorted(points, key=lambda p: (p[1], p[0]), reverse=True)
    times = [datetime.fromtimestamp(t, UTC) for _, t in newest_first]
    reasons = keep_reasons(times, rule)
    return [(pid, t, why) for (pid, t), why in zip(newest_first, reasons, strict=True)]


def to_forget(points: list[tuple[str, float]], policy: Policy) -> list[str]:
    """The points (id, unix time) the policy does not keep; none if it has no rule."""
    if not has_rules(policy):
        return []
    return [pid for pid, _, why in plan(points, keep_policy(policy)) if not why]


def live_points(
    registry: VaultRegistry, catalog: Catalog, vault: str, source: str
) -> list[tuple[str, float]]:
    """The points recorded for ``source`` that exist and have no tombstone, with their
    storage times."""
    gateway = registry.gateway(vault, SYSTEM)
    if gateway is None:
        return []
    mine = {
        name.rpartition("/")[2]
        for name, sources in catalog.sources_under(vault, "points/").items()
        if source in sources
    }
    stones = {i.name.rpartition("/")[2] for i in gateway.backend.list("deleted/")}
    return [
        (i.name.rpartition("/")[2], _time(i))
        for i in gateway.backend.list("points/")
        if i.name.rpartition("/")[2] in mine and i.name.rpartition("/")[2] not in stones
    ]


def _time(info: ObjectInfo) -> float:
    return info.mtime if info.mtime is not None else 0.0


# The scheduler reads the vault's listings as the server itself, not as a client's token.
SYSTEM = TokenRow("scheduler", "admin", b"", [], "the control plane", 0.0, None, None, None)
