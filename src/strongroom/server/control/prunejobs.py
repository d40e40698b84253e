"""Scheduled prune, run by a designated maintenance agent.

Prune reads trees, so it needs the vault key, which the server never has: the server only
queues a ``prune`` job (item ``vault:NAME``, like verify) at the vault's prune schedule, and
the one machine named in that schedule claims it.  Its agent runs the vault's prune with a
``maintenance`` token the administrator gave it (``strongroom agent add-token``); its backup
token cannot delete.  The claim query joins the schedule, so no other agent ever gets the job,
and it skips a vault whose ``vault:NAME`` item has a job running (a verify or another prune):
a prune never overlaps another prune, nor a verify that would see packs vanish under it.

A failure raises the vault's ``prune-failed`` alert (once); the next successful prune clears
that condition alone (a ``verify-error`` on the same vault stays until verify clears it).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from strongroom.records import dataclass
from strongroom.server.auth import ApiError
from strongroom.server.catalog import Catalog
from strongroom.server.catalog_db import Db
from strongroom.server.control.alerts import Alerts, notify
from strongroom.server.control.calendar import ScheduleError, parse_schedule
from strongroom.server.control.jobs import FINAL, Job, Jobs, Result
from strongroom.server.control.retention import SYSTEM
from strongroom.server.control.store import check_name
from strongroom.server.vaults import VaultRegistry

VAULT_ITEM = "vault:"
CONDITION = "prune-failed"


@dataclass(frozen=True, slots=True)
class PruneSchedule:
    vault: str
    prune: str
    machine: str
    grace_hours: float
    next_prune: float | None
    created: float

    def public(self) -> dict[str, Any]:
        return asdict(self)


_COLUMNS = ", ".join(PruneSchedule.__slots__)


def _next(expr: str, after: float) -> float | None:
    found = parse_schedule(expr).next_after(datetime.fromtimestamp(after, UTC))
    return None if found is None else found.timestamp()


class Pruner:
    def __init__(self, catalog: Catalog, registry: VaultRegistry, jobs: Jobs) -> None:
        self.catalog, self.registry, self.jobs = catalog, registry, jobs

    def set_schedule(
        self, vault: str, expr: str, machine: str, grace_hours: float, now: float
    ) -> PruneSchedule:
        self.check(vault, expr, machine, grace_hours)
        row = (vault, expr, machine, float(grace_hours), _next(expr, now), now)
        with self.catalog.tx() as db:
            db.execute("DELETE FROM prune_schedules WHERE vault = ?", (vault,))
            db.execute(f"INSERT INTO prune_schedules ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", row)
        return PruneSchedule(*row)

    def check(self, vault: str, expr: str, machine: str, grace_hours: float) -> None:
        """Refuse a bad schedule before anything is written (ApiError 400 or 404)."""
        check_name(vault, "vault")
        check_name(machine, "machine")
        try:
            parse_schedule(expr)
        except ScheduleError as exc:
            raise ApiError(400, str(exc)) from None
        if not 0 <= grace_hours <= 24 * 365:
            raise ApiError(400, "--prune-grace-hours must be 0 or more (at most a year)")
        if self.registry.gateway(vault, SYSTEM) is None:
            raise ApiError(404, f"no vault {vault!r} on this server", "no-vault")
        with self.catalog.read() as db:
            found = db.execute("SELECT 1 FROM machines WHERE name = ?", (machine,)).fetchone()
        if found is None:
            raise ApiError(404, f"no machine {machine!r}: register its agent first", "no-machine")

    def schedules(self) -> list[PruneSchedule]:
        with self.catalog.read() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM prune_schedules ORDER BY vault").fetchall()
        return [PruneSchedule(*r) for r in rows]

    # --- the scheduler's part --------------------------------------------------------------

    def tick(self, now: float) -> None:
        for s in self.schedules():
            if s.next_prune is not None and s.next_prune <= now:
                self._enqueue(s, now)

    def _enqueue(self, s: PruneSchedule, now: float) -> None:
        with self.catalog.tx() as db:
            row = db.execute(
                "SELECT next_prune FROM prune_schedules WHERE vault = ? FOR UPDATE", (s.vault,)
            ).fetchone()
            if row is None or row[0] != s.next_prune:
                return  # another server took this run
            item = VAULT_ITEM + s.vault
            busy = db.execute(
                "SELECT id FROM jobs WHERE item = ? AND kind = 'prune'"
                " AND state IN ('queued', 'running') LIMIT 1",
                (item,),
            ).fetchone()
            if busy is None:
                payload = {"vault": s.vault, "grace_hours": s.grace_hours}
                self.jobs.enqueue(db, item, "prune", float(s.next_prune or now), now, payload)
            else:  # one prune at a time: this run is folded into the waiting one
                self.jobs.log(db, int(busy[0]), now, ["a later scheduled prune skipped: busy"])
            db.execute(
                "UPDATE prune_schedules SET next_prune = ? WHERE vault = ?",
                (_next(s.prune, now), s.vault),
            )

    # --- the designated agent's part -------------------------------------------------------

    def claim(self, machine: str, now: float) -> tuple[Job, dict[str, Any]] | None:
        """The oldest queued prune of a vault whose schedule names ``machine``."""
        with self.catalog.tx() as db:
            rows = db.execute(
                "SELECT j.id FROM jobs j JOIN prune_schedules s ON j.item = ? || s.vault"
                " WHERE j.kind = 'prune' AND j.state = 'queued' AND s.machine = ?"
                " AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.item = j.item"
                " AND r.state = 'running') ORDER BY j.id FOR UPDATE OF j SKIP LOCKED",
                (VAULT_ITEM, machine),
            ).fetchall()
            if not rows:
                return None
            chosen = int(rows[0][0])
            taken = db.execute(
                "UPDATE jobs SET state = 'running', started = ?, heartbeat = ?, agent = ?,"
                " percent = NULL, eta = NULL WHERE id = ? AND state = 'queued'",
                (now, now, machine, chosen),
            ).rowcount
            if taken != 1:
                return None
            self.jobs.log(db, chosen, now, [f"started on {machine}"])
            row = db.execute(
                f"SELECT {', '.join(Job.__slots__)} FROM jobs WHERE id = ?", (chosen,)
            ).fetchone()
        job = Job(*row)
        payload = json.loads(job.payload)
        work = {"job": job.id, "kind": "prune", "item": job.item, **payload}
        return job, work


def record(db: Db, job: Job, r: Result, now: float) -> None:
    """A prune job's result (inside the caller's transaction), with its alert or recovery."""
    state = r.state if r.state in FINAL else "failed"
    db.execute(
        "UPDATE jobs SET state = ?, finished = ?, bytes_read = ?, bytes_added = ?, files = ?,"
        " reason = ?, percent = NULL, eta = NULL WHERE id = ?",
        (state, now, r.bytes_read, r.bytes_added, r.files, r.reason, job.id),
    )
    vault = job.item[len(VAULT_ITEM) :]
    about = {"vault": vault, "kind": "prune", "job": job.id}
    if state == "failed":
        Alerts.raise_(db, job.item, CONDITION, r.reason or "prune failed", now, about)
    elif state in ("succeeded", "partial"):
        _recover(db, job.item, now, about)


def _recover(db: Db, item: str, now: float, about: dict[str, Any]) -> None:
    cur = db.execute("DELETE FROM alert_state WHERE item = ? AND condition = ?", (item, CONDITION))
    if cur.rowcount:
        detail = f"pruned again (was {CONDITION})"
        body = {**about, "event": "recovered", "item": item, "detail": detail}
        notify(db, now, {**body, "cleared": [CONDITION]})
