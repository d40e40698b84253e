"""Scheduled verification on the server, without the key.

Packs, index objects and points are named by the BLAKE3 of their stored bytes
(docs/format.md §1), so the server can check them without any key: read the object whole,
hash it, compare with its name.  That finds bit rot, truncation and tampering in the storage;
it cannot decrypt, so it cannot tell whether a point's trees reach every chunk they need (that
is ``strongroom check --read-data`` with the key).

A vault's schedule (``vault_schedules``) enqueues a ``verify`` job (item ``vault:NAME``, the
jobs table's unique key: each run once, across servers); the server that claims it runs it on
a thread of its own, with heartbeats, so a server killed mid-verify leaves the job to be
re-queued like an agent's.  Each run reads a rotating subset: every object whose last check
(or first sighting) would be older than ``verify_days`` before the next run, every object found
damaged before, and at least its share (objects x interval / verify_days), oldest first.
A damaged object raises the vault's ``verify-error`` alert; a clean run clears it.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import blake3

from strongroom.errors import StorageError
from strongroom.records import dataclass
from strongroom.server.auth import ApiError
from strongroom.server.catalog import Catalog
from strongroom.server.catalog_db import CatalogError, Db
from strongroom.server.control.alerts import Alerts
from strongroom.server.control.calendar import ScheduleError, parse_schedule
from strongroom.server.control.clock import Clock
from strongroom.server.control.jobs import Jobs
from strongroom.server.control.retention import SYSTEM
from strongroom.server.control.store import check_name
from strongroom.server.vaults import VaultRegistry

log = logging.getLogger("strongroom.control")
PREFIXES = ("data/", "index/", "points/")
DAY = 86400.0
VAULT_ITEM = "vault:"
"""Verify jobs and the vault's alerts are filed under the pseudo-item ``vault:NAME``."""


@dataclass(frozen=True, slots=True)
class VaultSchedule:
    vault: str
    verify: str
    verify_days: float
    next_verify: float | None
    created: float

    def public(self) -> dict[str, Any]:
        return asdict(self)


def next_time(expr: str, after: float) -> float | None:
    found = parse_schedule(expr).next_after(datetime.fromtimestamp(after, UTC))
    return None if found is None else found.timestamp()


class Verifier:
    def __init__(
        self, catalog: Catalog, registry: VaultRegistry, jobs: Jobs, alerts: Alerts, clock: Clock
    ) -> None:
        self.catalog, self.registry, self.jobs, self.alerts = catalog, registry, jobs, alerts
        self.clock = clock
        self.me = f"server:{socket.gethostname()}"
        self._worker: threading.Thread | None = None
        self.background = True
        """False runs queued verify jobs inside :meth:`tick` (tests with a manual clock)."""

    # --- schedules -------------------------------------------------------------------------

    def set_schedule(self, vault: str, verify: str, days: float) -> VaultSchedule:
        check_name(vault, "vault")
        try:
            parse_schedule(verify)
        except ScheduleError as exc:
            raise ApiError(400, str(exc)) from None
        if not 0 < days <= 3650:
            raise ApiError(400, "--verify-days must be more than 0 (and at most 3650)")
        if self.registry.gateway(vault, SYSTEM) is None:
            raise ApiError(404, f"no vault {vault!r} on this server", "no-vault")
        now = self.clock.now()
        row = (vault, verify, float(days), next_time(verify, now), now)
        with self.catalog.tx() as db:
            db.execute("DELETE FROM vault_schedules WHERE vault = ?", (vault,))
            db.execute(
                "INSERT INTO vault_schedules (vault, verify, verify_days, next_verify, created)"
                " VALUES (?, ?, ?, ?, ?)",
                row,
            )
        return VaultSchedule(*row)

    def schedules(self) -> list[VaultSchedule]:
        with self.catalog.read() as db:
            rows = db.execute(
                "SELECT vault, verify, verify_days, next_verify, created FROM vault_schedules"
                " ORDER BY vault"
            ).fetchall()
        return [VaultSchedule(*r) for r in rows]

    # --- the scheduler's part --------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Enqueue due verify runs, and run queued ones on a worker thread."""
        for s in self.schedules():
            if s.next_verify is not None and s.next_verify <= now:
                self._enqueue(s, now)
        with self.catalog.read() as db:  # most passes: nothing queued, no write transaction
            queued = db.execute(
                "SELECT 1 FROM jobs WHERE kind = 'verify' AND state = 'queued' LIMIT 1"
            ).fetchone()
        if queued is None:
            return
        if not self.background:
            self._drain()
        elif self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._drain, name="verify", daemon=True)
            self._worker.start()

    def _enqueue(self, s: VaultSchedule, now: float) -> None:
        assert s.next_verify is not None
        with self.catalog.tx() as db:
            row = db.execute(
                "SELECT next_verify FROM vault_schedules WHERE vault = ? FOR UPDATE", (s.vault,)
            ).fetchone()
            if row is None or row[0] != s.next_verify:
                return  # another server took this run
            item = VAULT_ITEM + s.vault
            open_verify = db.execute(  # a queued prune of the vault does not skip this run
                "SELECT 1 FROM jobs WHERE item = ? AND kind = 'verify'"
                " AND state IN ('queued', 'running') LIMIT 1",
                (item,),
            ).fetchone()
            if open_verify is None:
                self.jobs.enqueue(db, item, "verify", s.next_verify, now, {"vault": s.vault})
            db.execute(
                "UPDATE vault_schedules SET next_verify = ? WHERE vault = ?",
                (next_time(s.verify, now), s.vault),
            )

    def _drain(self) -> None:
        try:
            while (job := self._claim()) is not None:
                self.run(*job)
        except (CatalogError, StorageError, ApiError) as exc:
            log.warning("verify failed: %s", exc)

    def _claim(self) -> tuple[int, str] | None:
        now = self.clock.now()
        with self.catalog.tx() as db:
            row = db.execute(
                "SELECT id, item FROM jobs j WHERE kind = 'verify' AND state = 'queued'"
                " AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.item = j.item"
                " AND r.state = 'running')"  # not while the vault's prune runs
                " ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = 'running', started = ?, heartbeat = ?, agent = ?"
                " WHERE id = ? AND state = 'queued'",
                (now, now, self.me, row[0]),
            )
            self.jobs.log(db, int(row[0]), now, [f"started on {self.me}"])
        return int(row[0]), str(row[1])[len(VAULT_ITEM) :]

    # --- one run ---------------------------------------------------------------------------

    def run(self, job: int, vault: str) -> None:
        from strongroom.server.control.verifyrun import VerifyRun  # it imports this module

        VerifyRun(self, job, vault).run()

    def schedule_of(self, vault: str) -> VaultSchedule | None:
        return next((s for s in self.schedules() if s.vault == vault), None)

    @staticmethod
    def raise_damage(db: Db, vault: str, detail: str, now: float) -> None:
        about = {"vault": vault, "kind": "verify"}
        Alerts.raise_(db, VAULT_ITEM + vault, "verify-error", detail, now, about)

    @staticmethod
    def clear_damage(db: Db, vault: str, now: float) -> None:
        about = {"vault": vault, "kind": "verify"}
        Alerts.recover(db, VAULT_ITEM + vault, now, about, "verified clean again")


def share(count: int, interval: float | None, days: float) -> int:
    """How many objects one run checks at least, so that all are checked within ``days``."""
    if interval is None:
        return count
    return min(count, math.ceil(count * max(interval, 0.0) / (days * DAY)))


def object_ok(name: str, data: bytes) -> bool:
    return blake3.blake3(data).hexdigest() == name.rpartition("/")[2]
