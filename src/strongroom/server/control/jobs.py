"""Jobs: queued, running, succeeded, partial, failed, cancelled; their progress, log and result.

A job is a row keyed by (item, kind, scheduled time): the scheduler's insert of a run that
exists already does nothing, so each scheduled run is enqueued once however often the
scheduler looks.  An agent claims a queued job of its own machine in one transaction, and
never one of an item that has a job running: one item is never backed up twice at once.
"""

from __future__ import annotations

import json
from typing import Any

from strongroom.records import dataclass
from strongroom.server.auth import ApiError
from strongroom.server.catalog import Catalog
from strongroom.server.catalog_db import Db

STATES = ("queued", "running", "succeeded", "partial", "failed", "cancelled")
FINAL = ("succeeded", "partial", "failed", "cancelled")
KINDS = ("backup", "retention", "restore", "verify", "prune")
MAX_LOG_LINES = 1000


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    item: str
    kind: str
    scheduled: float
    state: str
    attempt: int
    created: float
    not_before: float | None
    started: float | None
    finished: float | None
    heartbeat: float | None
    agent: str | None
    bytes_read: int
    bytes_added: int
    files: int
    percent: float | None
    eta: float | None
    point: str | None
    reason: str | None
    cancel: int
    payload: str

    def public(self) -> dict[str, Any]:
        doc = {f: getattr(self, f) for f in Job.__slots__}  # asdict's deep copies are slow
        doc["payload"] = json.loads(self.payload)
        doc["cancel"] = bool(self.cancel)
        return doc


_COLUMNS = ", ".join(Job.__slots__)


@dataclass(frozen=True, slots=True)
class Result:
    """What an agent reports at the end of a job."""

    state: str
    point: str | None = None
    bytes_read: int = 0
    bytes_added: int = 0
    files: int = 0
    reason: str | None = None
    logical: int = 0


class Jobs:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def enqueue(
        self,
        db: Db,
        item: str,
        kind: str,
        scheduled: float,
        now: float,
        payload: dict[str, Any] | None = None,
    ) -> int | None:
        """Insert a queued job (inside the caller's transaction); None if it exists."""
        cur = db.execute(
            "INSERT INTO jobs (item, kind, scheduled, state, attempt, created, payload)"
            " VALUES (?, ?, ?, 'queued', 1, ?, ?) ON CONFLICT DO NOTHING",
            (item, kind, scheduled, now, json.dumps(payload or {})),
        )
        if cur.rowcount != 1:
            return None
        row = db.execute(
            "SELECT id FROM jobs WHERE item = ? AND kind = ? AND scheduled = ?",
            (item, kind, scheduled),
        ).fetchone()
        return int(row[0])

    @staticmethod
    def open_job(db: Db, item: str) -> int | None:
        row = db.execute(
            "SELECT id FROM jobs WHERE item = ? AND state IN ('queued', 'running') LIMIT 1",
            (item,),
        ).fetchone()
        return int(row[0]) if row else None

    @staticmethod
    def log(db: Db, job: int, now: float, lines: list[str]) -> None:
        db.executemany(
            "INSERT INTO job_log (job, time, line) VALUES (?, ?, ?)",
            [(job, now, line[:2000]) for line in lines[:MAX_LOG_LINES]],
        )

    def get(self, job_id: int) -> Job:
        with self.catalog.read() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise ApiError(404, f"no job {job_id}", "no-job")
        return Job(*row)

    def lines(self, job_id: int) -> list[dict[str, Any]]:
        with self.catalog.read() as db:
            rows = db.execute(
                "SELECT time, line FROM job_log WHERE job = ? ORDER BY rowid", (job_id,)
            ).fetchall()
        return [{"time": t, "line": line} for t, line in rows]

    def history(self, item: str | None = None, limit: int = 100) -> list[Job]:
        where, args = ("WHERE item = ?", (item, limit)) if item else ("", (limit,))
        with self.catalog.read() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY id DESC LIMIT ?", args
            ).fetchall()
        return [Job(*r) for r in rows]

    def claim(self, machine: str, now: float, startable: set[str]) -> Job | None:
        """The oldest queued job of the machine's ``startable`` items, now running."""
        if not startable:
            return None
        with self.catalog.tx() as db:
            # one claim per machine at a time (across servers), so the check that no job of
            # the item runs holds until this one is marked running
            db.execute("SELECT name FROM machines WHERE name = ? FOR UPDATE", (machine,))
            rows = db.execute(
                "SELECT j.id, j.item FROM jobs j JOIN items i ON i.name = j.item"
                " WHERE i.machine = ? AND j.state = 'queued'"
                " AND (j.not_before IS NULL OR j.not_before <= ?)"
                " AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.item = j.item"
                " AND r.state = 'running') ORDER BY j.id FOR UPDATE OF j SKIP LOCKED",
                (machine, now),
            ).fetchall()
            chosen = next((int(r[0]) for r in rows if r[1] in startable), None)
            if chosen is None:
                return None
            taken = db.execute(
                "UPDATE jobs SET state = 'running', started = ?, heartbeat = ?, agent = ?,"
                " percent = NULL, eta = NULL WHERE id = ? AND state = 'queued'",
                (now, now, machine, chosen),
            ).rowcount
            if taken != 1:
                return None
            self.log(db, chosen, now, [f"started on {machine}"])
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (chosen,)).fetchone()
        return Job(*row)

    def progress(self, job_id: int, machine: str, now: float, doc: dict[str, Any]) -> bool:
        """Record an agent's progress; True if the job is to be cancelled (or no longer
        this agent's to run)."""
        with self.catalog.tx() as db:
            row = db.execute(
                "SELECT state, agent, cancel FROM jobs WHERE id = ? FOR UPDATE", (job_id,)
            ).fetchone()
            if row is None or row[0] != "running" or row[1] != machine:
                return True
            db.execute(
                "UPDATE jobs SET heartbeat = ?, bytes_read = ?, files = ?, percent = ?, eta = ?"
                " WHERE id = ?",
                (
                    now,
                    int(doc.get("bytes_read", 0)),
                    int(doc.get("files", 0)),
                    _number(doc.get("percent")),
                    _number(doc.get("eta")),
                    job_id,
                ),
            )
            self.log(db, job_id, now, [str(x) for x in doc.get("log", [])])
            return bool(row[2])

    def cancel(self, job_id: int, now: float) -> str:
        """Cancel a queued job at once; ask the agent of a running one to stop."""
        with self.catalog.tx() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ? FOR UPDATE", (job_id,)).fetchone()
            if row is None:
                raise ApiError(404, f"no job {job_id}", "no-job")
            state = str(row[0])
            if state == "queued":
                db.execute(
                    "UPDATE jobs SET state = 'cancelled', finished = ?, reason = ? WHERE id = ?",
                    (now, "cancelled before it started", job_id),
                )
                return "cancelled"
            if state == "running":
                db.execute("UPDATE jobs SET cancel = 1 WHERE id = ?", (job_id,))
                self.log(db, job_id, now, ["cancel requested"])
                return "cancelling"
            raise ApiError(409, f"job {job_id} is {state} already", "exists")

    def requeue_lost(self, now: float, stale_before: float) -> list[int]:
        """Running jobs whose agent has not reported since ``stale_before``: queued again
        (cancelled, if that was asked); the agent's later report for them is refused."""
        with self.catalog.tx() as db:
            rows = db.execute(
                "SELECT id, cancel FROM jobs WHERE state = 'running' AND heartbeat < ?"
                " FOR UPDATE SKIP LOCKED",
                (stale_before,),
            ).fetchall()
            for job_id, cancel in rows:
                state = "cancelled" if cancel else "queued"
                db.execute(
                    "UPDATE jobs SET state = ?, agent = NULL, finished = ? WHERE id = ?",
                    (state, now if cancel else None, job_id),
                )
                self.log(db, int(job_id), now, [f"agent lost (no report): {state} again"])
        return [int(r[0]) for r in rows]

    def expire(self, before: float) -> int:
        """Drop finished jobs (and their logs) that ended before ``before``."""
        with self.catalog.tx() as db:
            db.execute(
                "DELETE FROM job_log WHERE job IN (SELECT id FROM jobs WHERE finished < ?"
                " AND state IN ('succeeded', 'partial', 'failed', 'cancelled'))",
                (before,),
            )
            cur = db.execute(
                "DELETE FROM jobs WHERE finished < ?"
                " AND state IN ('succeeded', 'partial', 'failed', 'cancelled')",
                (before,),
            )
            return int(cur.rowcount)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
