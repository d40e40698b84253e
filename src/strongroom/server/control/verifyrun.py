"""One verify run of a vault: list its content-named objects, pick the rotating subset, hash
each, record when it was checked and what was wrong (see :mod:`.verify`)."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from strongroom.errors import ObjectNotFound, StorageError
from strongroom.server.control.retention import SYSTEM
from strongroom.server.control.usage import record
from strongroom.server.control.verify import DAY, PREFIXES, next_time, object_ok, share

if TYPE_CHECKING:
    from strongroom.server.control.verify import Verifier
    from strongroom.storage.backend import Backend

_HASH = re.compile(r"(data/[0-9a-f]{2}/|index/|points/)[0-9a-f]{64}$")
"""Content-named objects only (a stray or foreign name is not the verifier's to judge)."""
HEARTBEAT_S = 5.0
"""Real seconds between the run's heartbeats (the lost-job rule re-queues a silent one)."""


class VerifyRun:
    def __init__(self, verifier: Verifier, job: int, vault: str) -> None:
        self.v, self.job, self.vault = verifier, job, vault
        self.catalog = verifier.catalog
        self.lines: list[str] = []
        self.damaged: list[str] = []
        self.bytes = self.checked = 0
        self._beat = time.monotonic()

    def run(self) -> None:
        gateway = self.v.registry.gateway(self.vault, SYSTEM)
        schedule = self.v.schedule_of(self.vault)
        if gateway is None or schedule is None:
            self._finish("failed", f"no vault {self.vault!r} (or no schedule) any more")
            return
        now = self.v.clock.now()
        backend = gateway.backend
        listing = {p: list(backend.list(p)) for p in (*PREFIXES, "deleted/")}
        record(self.catalog, self.vault, listing)  # the vault's size for /metrics, free
        sizes = {i.name: i.size for p in PREFIXES for i in listing[p] if _HASH.match(i.name)}
        chosen = self._choose(sizes, now, schedule.verify, schedule.verify_days)
        for name in chosen:
            if self._cancelled():
                self._finish("cancelled", "cancelled while running", now)
                return
            self._check(backend, name)
        self.lines.append(
            f"checked {self.checked} of {len(sizes)} object(s), {self.bytes} bytes;"
            f" every object is checked within {schedule.verify_days:g} day(s)"
        )
        if self.damaged:
            self._finish("failed", f"{len(self.damaged)} damaged: {', '.join(self.damaged[:5])}")
        else:
            self._finish("succeeded", None)

    def _choose(self, sizes: dict[str, int], now: float, expr: str, days: float) -> list[str]:
        """Record new objects, forget vanished ones, and pick this run's subset."""
        with self.catalog.tx() as db:
            known = {
                str(n): (float(seen), checked, error)
                for n, seen, checked, error in db.execute(
                    "SELECT name, first_seen, checked, error FROM object_checks WHERE vault = ?",
                    (self.vault,),
                ).fetchall()
            }
            new = [(self.vault, n, now) for n in sizes if n not in known]
            db.executemany(
                "INSERT INTO object_checks (vault, name, first_seen) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                new,
            )
            gone = [(self.vault, n) for n in known if n not in sizes]
            db.executemany("DELETE FROM object_checks WHERE vault = ? AND name = ?", gone)
        # what would pass ``days`` unchecked before the next run must be read now; the share
        # is taken over the schedule's period (between the next run and the one after it)
        later = next_time(expr, now)
        after = None if later is None else next_time(expr, later)
        interval = None if later is None or after is None else after - later
        horizon = (later or now) - days * DAY
        order: list[tuple[float, str]] = []
        must: list[str] = []
        for name in sizes:
            seen, checked, error = known.get(name, (now, None, None))
            last = float(checked) if checked is not None else seen
            if error is not None or last <= horizon or later is None:
                must.append(name)
            else:
                order.append((last, name))
        order.sort()
        extra = max(0, share(len(sizes), interval, days) - len(must))
        return must + [n for _, n in order[:extra]]

    def _check(self, backend: Backend, name: str) -> None:
        try:
            data = backend.get(name)
        except ObjectNotFound:
            return  # removed by a prune since the listing
        except StorageError as exc:
            self._record(name, f"unreadable: {exc}")
            return
        self.bytes += len(data)
        self.checked += 1
        self._record(name, None if object_ok(name, data) else "content does not match its name")

    def _record(self, name: str, error: str | None) -> None:
        now = self.v.clock.now()
        if error is not None:
            self.damaged.append(name)
            self.lines.append(f"{name}: {error}")
        with self.catalog.tx() as db:
            db.execute(
                "UPDATE object_checks SET checked = ?, error = ? WHERE vault = ? AND name = ?",
                (now, error, self.vault, name),
            )
            if time.monotonic() - self._beat > HEARTBEAT_S:
                self._beat = time.monotonic()
                db.execute(
                    "UPDATE jobs SET heartbeat = ?, bytes_read = ?, files = ? WHERE id = ?",
                    (now, self.bytes, self.checked, self.job),
                )

    def _cancelled(self) -> bool:
        with self.catalog.read() as db:
            row = db.execute("SELECT cancel, state FROM jobs WHERE id = ?", (self.job,)).fetchone()
        return row is None or bool(row[0]) or row[1] != "running"

    def _finish(self, state: str, reason: str | None, now: float | None = None) -> None:
        now = self.v.clock.now()
        with self.catalog.tx() as db:
            taken = db.execute(
                "UPDATE jobs SET state = ?, finished = ?, bytes_read = ?, files = ?, reason = ?"
                " WHERE id = ? AND state = 'running' AND agent = ?",
                (state, now, self.bytes, self.checked, reason, self.job, self.v.me),
            ).rowcount
            if taken != 1:
                return  # re-queued meanwhile (taken as lost): its next run reports
            self.v.jobs.log(db, self.job, now, self.lines)
            if self.damaged:
                self.v.raise_damage(db, self.vault, reason or "damaged objects", now)
            elif state == "succeeded":
                self.v.clear_damage(db, self.vault, now)
