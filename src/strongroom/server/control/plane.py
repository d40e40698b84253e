"""The control plane: scheduling, job results, retention, overdue detection, health.

One scheduler pass (:meth:`ControlPlane.tick`) enqueues every due run (once: the jobs
table's unique key), re-queues jobs whose agent stopped reporting, raises overdue alerts,
sends pending notices and drops old history.  It runs on a thread of the server process.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from typing import Any

from strongroom.errors import StorageError
from strongroom.server.auth import ApiError
from strongroom.server.catalog import Catalog
from strongroom.server.catalog_db import CatalogError, Db
from strongroom.server.control import retention
from strongroom.server.control.alerts import Alerts
from strongroom.server.control.calendar import parse_schedule
from strongroom.server.control.clock import Clock, lost_seconds, tick_seconds
from strongroom.server.control.jobs import FINAL, Job, Jobs, Result
from strongroom.server.control.prunejobs import Pruner
from strongroom.server.control.prunejobs import record as record_prune
from strongroom.server.control.store import Definitions, Item, Policy, item_in
from strongroom.server.control.verify import Verifier
from strongroom.server.control.watch import watch_addresses
from strongroom.server.vaults import VaultRegistry

log = logging.getLogger("strongroom.control")
LOST_AFTER_S = 300.0
"""Real seconds without a report after which a running job's agent is taken as gone."""
HISTORY_DAYS = 90.0
MINUTE = 60.0


def next_run(policy: Policy, after: float) -> float | None:
    found = parse_schedule(policy.schedule).next_after(datetime.fromtimestamp(after, UTC))
    return None if found is None else found.timestamp()


class ControlPlane:
    def __init__(
        self, catalog: Catalog, registry: VaultRegistry, clock: Clock | None = None
    ) -> None:
        self.catalog, self.registry = catalog, registry
        self.clock = clock or Clock.from_env()
        self.defs, self.jobs, self.alerts = Definitions(catalog), Jobs(catalog), Alerts(catalog)
        self.verifier = Verifier(catalog, registry, self.jobs, self.alerts, self.clock)
        self.pruner = Pruner(catalog, registry, self.jobs)
        self.history_days = HISTORY_DAYS
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- definitions -----------------------------------------------------------------------

    def protect(self, item: Item) -> None:
        policy = self.defs.policy(item.policy)
        if policy is None:
            raise ApiError(404, f"no policy {item.policy!r}", "no-policy")
        now = self.clock.now()
        self.defs.add_item(item, next_run(policy, now))

    def backup_now(self, name: str) -> int:
        item = self._item(name)
        now = self.clock.now()
        with self.catalog.tx() as db:
            db.execute("SELECT name FROM items WHERE name = ? FOR UPDATE", (item.name,))
            if (open_job := self.jobs.open_job(db, item.name)) is not None:
                raise ApiError(409, f"item {name!r} has job {open_job} queued or running", "exists")
            job = self.jobs.enqueue(db, item.name, "backup", now, now, {"manual": True})
        if job is None:
            raise ApiError(409, f"item {name!r} has a job for this time already", "exists")
        return job

    def _item(self, name: str) -> Item:
        item = self.defs.item(name)
        if item is None:
            raise ApiError(404, f"no item {name!r}", "no-item")
        return item

    # --- the scheduler ---------------------------------------------------------------------

    def tick(self) -> None:
        now = self.clock.now()
        policies = {p.name: p for p in self.defs.policies()}
        for item in self.defs.items():
            policy = policies.get(item.policy)
            if policy is None:
                continue
            if item.next_run is not None and item.next_run <= now:
                self._schedule(item, policy, now)
            self._check_overdue(item, policy, now)
        self.jobs.requeue_lost(now, now - self.clock.span(lost_seconds(LOST_AFTER_S)))
        self.verifier.tick(now)
        self.pruner.tick(now)
        watch_addresses(self.catalog, now)
        self.alerts.deliver(now)
        self.jobs.expire(now - self.history_days * 86400)

    def _schedule(self, item: Item, policy: Policy, now: float) -> None:
        assert item.next_run is not None
        with self.catalog.tx() as db:
            # the item's row lock: of several servers, one enqueues this run and moves next_run
            row = db.execute(
                "SELECT next_run FROM items WHERE name = ? FOR UPDATE", (item.name,)
            ).fetchone()
            if row is None or row[0] != item.next_run:
                return  # another server took this run
            busy = self.jobs.open_job(db, item.name)
            if busy is None:
                self.jobs.enqueue(db, item.name, "backup", item.next_run, now)
            else:  # one run at a time: this one is folded into the waiting one
                self.jobs.log(db, busy, now, [f"run of {_iso(item.next_run)} skipped: job busy"])
            db.execute(
                "UPDATE items SET next_run = ?, due_since = coalesce(due_since, ?)"
                " WHERE name = ? AND next_run = ?",
                (next_run(policy, now), item.next_run, item.name, item.next_run),
            )

    def _check_overdue(self, item: Item, policy: Policy, now: float) -> None:
        if item.due_since is None or now <= item.due_since + policy.grace * MINUTE:
            return
        detail = f"no successful backup since the run due at {_iso(item.due_since)}"
        with self.catalog.tx() as db:
            self.alerts.raise_(db, item.name, "overdue", detail, now, _about(item))

    def start(self) -> None:
        """Run :meth:`tick` on a thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(tick_seconds()):
            try:
                self.tick()
            except (CatalogError, StorageError, ApiError) as exc:
                log.warning("scheduler pass failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # --- agents ----------------------------------------------------------------------------

    def claim(self, machine: str) -> tuple[Job, dict[str, Any]] | None:
        """The next job for ``machine``'s agent and the work it describes."""
        now = self.clock.now()
        minute = int(now // MINUTE) % 1440
        policies = {p.name: p for p in self.defs.policies()}
        items = {i.name: i for i in self.defs.items(machine)}
        startable = {n for n, i in items.items() if policies[i.policy].in_window(minute)}
        job = self.jobs.claim(machine, now, startable)
        if job is None:
            return self.pruner.claim(machine, now)
        item = items[job.item]
        policy = policies[item.policy]
        work = {
            "job": job.id,
            "kind": job.kind,
            "item": item.name,
            "item_kind": item.kind,
            "vault": policy.vault,
            "source": item.source,
            "targets": item.targets,
            "excludes": item.excludes,
            "consistency": policy.consistency,
            **json.loads(job.payload),
        }
        return job, work

    def finish(self, job_id: int, machine: str, result: Result, lines: list[str]) -> Job:
        now = self.clock.now()
        with self.catalog.tx() as db:
            job = Job(
                *db.execute(
                    f"SELECT {', '.join(Job.__slots__)} FROM jobs WHERE id = ? FOR UPDATE",
                    (job_id,),
                ).fetchone()
                or _no_job(job_id)
            )
            if job.state != "running" or job.agent != machine:
                raise ApiError(409, f"job {job_id} is not running on {machine}", "not-running")
            self.jobs.log(db, job_id, now, lines)
            if job.kind == "prune":  # a vault's, not an item's
                record_prune(db, job, result, now)
            else:
                item = self._item_in(db, job.item)
                self._record(db, job, item, result, now)
        if job.kind == "backup" and result.state in ("succeeded", "partial"):
            self._plan_retention(job, item, machine, now)
        return self.jobs.get(job_id)

    @staticmethod
    def _item_in(db: Db, name: str) -> Item:
        item = item_in(db, name)
        if item is None:
            raise ApiError(404, f"no item {name!r}", "no-item")
        return item

    def _record(self, db: Db, job: Job, item: Item, r: Result, now: float) -> None:
        state = r.state if r.state in FINAL else "failed"
        policy = self.defs_policy(db, item.policy)
        final = (now, r.bytes_read, r.bytes_added, r.files, r.point, r.reason, job.id)
        set_final = (
            "UPDATE jobs SET state = ?, finished = ?, bytes_read = ?, bytes_added = ?, files = ?,"
            " point = ?, reason = ?, percent = NULL, eta = NULL WHERE id = ?"
        )
        if job.kind in ("retention", "restore"):  # no point of the item's, no alert
            db.execute(set_final, (state, *final))
            db.execute("DELETE FROM tombstone_grants WHERE job = ?", (job.id,))
            return
        if state in ("succeeded", "partial"):
            db.execute(set_final, (state, *final))
            db.execute(
                "UPDATE items SET last_success = ?, last_point = ?, due_since = NULL"
                " WHERE name = ?",
                (now, r.point, item.name),
            )
            if r.point and r.logical:
                db.execute(
                    "INSERT INTO point_sizes (vault, point, logical) VALUES (?, ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (policy.vault, r.point, r.logical),
                )
            self.alerts.recover(db, item.name, now, _about(item))
        elif state == "cancelled":
            db.execute(set_final, (state, *final))
        else:
            why = r.reason or "failed"
            self.alerts.raise_(db, item.name, "failed", why, now, _about(item))
            if job.attempt <= policy.retries:
                delay = policy.retry_delay * MINUTE
                db.execute(
                    "UPDATE jobs SET state = 'queued', attempt = attempt + 1, not_before = ?,"
                    " agent = NULL, reason = ? WHERE id = ?",
                    (now + delay, why, job.id),
                )
                self.jobs.log(
                    db,
                    job.id,
                    now,
                    [
                        f"attempt {job.attempt} failed: {why}; "
                        f"retrying in {policy.retry_delay:g} min"
                    ],
                )
            else:
                db.execute(set_final, ("failed", *final))

    @staticmethod
    def defs_policy(db: Db, name: str) -> Policy:
        cols = ", ".join(Policy.__slots__)
        row = db.execute(f"SELECT {cols} FROM policies WHERE name = ?", (name,)).fetchone()
        return Policy(*row)

    def _plan_retention(self, job: Job, item: Item, machine: str, now: float) -> None:
        policy = self.defs.policy(item.policy)
        if policy is None or not retention.has_rules(policy):
            return
        try:
            points = retention.live_points(self.registry, self.catalog, policy.vault, item.source)
        except (StorageError, ApiError) as exc:
            log.warning("retention of %s not planned: %s", item.name, exc)
            return
        forget = retention.to_forget(points, policy)
        if not forget:
            return
        with self.catalog.tx() as db:
            token = db.execute("SELECT token FROM machines WHERE name = ?", (machine,)).fetchone()
            payload = {"points": forget, "reason": f"retention policy {policy.name}"}
            rjob = self.jobs.enqueue(db, item.name, "retention", job.scheduled, now, payload)
            if rjob is None or token is None:
                return
            db.executemany(
                "INSERT INTO tombstone_grants (vault, point, token, job) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                [(policy.vault, p, str(token[0]), rjob) for p in forget],
            )

    # --- views -----------------------------------------------------------------------------

    def last_backups(self) -> dict[str, tuple[str, float | None, int, int]]:
        """Each item's last finished backup: state, duration, bytes read and added (one
        query the index ``jobs (kind, item, state, id)`` answers)."""
        with self.catalog.read() as db:
            rows = db.execute(
                "SELECT item, state, finished - started, bytes_read, bytes_added FROM jobs"
                " WHERE id IN (SELECT max(id) FROM jobs WHERE kind = 'backup'"
                " AND state IN ('succeeded', 'partial', 'failed') GROUP BY item)"
            ).fetchall()
        return {str(r[0]): (str(r[1]), r[2], int(r[3]), int(r[4])) for r in rows}

    def items_view(
        self, last_jobs: dict[str, tuple[str, float | None, int, int]] | None = None
    ) -> list[dict[str, Any]]:
        now = self.clock.now()
        policies = {p.name: p for p in self.defs.policies()}
        active = self.alerts.active()
        found = self.last_backups() if last_jobs is None else last_jobs
        last = {item: row[0] for item, row in found.items()}
        rows = []
        for item in self.defs.items():
            policy = policies[item.policy]
            overdue = item.due_since is not None and now > item.due_since + policy.grace * MINUTE
            if overdue:
                health = "overdue"
            elif "failed" in active.get(item.name, []):
                health = "failed"
            elif item.last_success is None or last.get(item.name) == "partial":
                health = "warning"
            else:
                health = "ok"
            rows.append(
                {
                    **item.public(),
                    "health": health,
                    "alerts": active.get(item.name, []),
                    "vault": policy.vault,
                }
            )
        return rows


def _no_job(job_id: int) -> tuple[object, ...]:
    raise ApiError(404, f"no job {job_id}", "no-job")


def _about(item: Item) -> dict[str, Any]:
    return {"machine": item.machine, "policy": item.policy, "kind": item.kind}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")
