"""Alerts: an item's conditions (failed, overdue) raised once, a notice when it recovers,
delivered to webhooks (a JSON POST) and e-mail addresses (SMTP).

De-duplication is the ``alert_state`` table: a condition already raised for an item raises
nothing more until the item recovers (its next successful backup), which clears every
condition and sends one "recovered" notice.  Notices wait in ``alert_outbox`` until their
target accepted them, so a receiver that is down gets them later (up to ``MAX_ATTEMPTS``).
"""

from __future__ import annotations

import json
import smtplib
import socket
import urllib.error
import urllib.request
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from strongroom.records import dataclass
from strongroom.server.auth import ApiError
from strongroom.server.catalog import Catalog
from strongroom.server.catalog_db import Conflict, Db

TARGET_KINDS = ("webhook", "email")
MAX_ATTEMPTS = 20
SEND_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Target:
    id: int
    kind: str
    address: str
    smtp: str | None

    def public(self) -> dict[str, object]:
        return {"id": self.id, "kind": self.kind, "address": self.address, "smtp": self.smtp}


def check_target(kind: str, address: str, smtp: str | None) -> None:
    if kind not in TARGET_KINDS:
        raise ApiError(400, f"alert kind must be one of {', '.join(TARGET_KINDS)}")
    if kind == "webhook" and not address.startswith(("http://", "https://")):
        raise ApiError(400, f"a webhook is an http(s):// URL, not {address!r}")
    if kind == "email":
        if "@" not in address or any(c.isspace() for c in address):
            raise ApiError(400, f"invalid e-mail address {address!r}")
        if smtp is None or _smtp_address(smtp) is None:
            raise ApiError(400, "an e-mail alert needs --smtp HOST:PORT")


def _smtp_address(text: str) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


class Alerts:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def add_target(self, kind: str, address: str, smtp: str | None, now: float) -> Target:
        check_target(kind, address, smtp)
        with self.catalog.tx() as db:
            try:
                db.execute(
                    "INSERT INTO alert_targets (kind, address, smtp, created) VALUES (?, ?, ?, ?)",
                    (kind, address, smtp, now),
                )
            except Conflict:
                raise ApiError(
                    409, f"{kind} {address} is an alert target already", "exists"
                ) from None
            row = db.execute(  # no lastrowid on PostgreSQL: the unique key finds it
                "SELECT id FROM alert_targets WHERE kind = ? AND address = ?", (kind, address)
            ).fetchone()
            return Target(int(row[0]), kind, address, smtp)

    def targets(self) -> list[Target]:
        with self.catalog.read() as db:
            rows = db.execute("SELECT id, kind, address, smtp FROM alert_targets ORDER BY id")
            return [Target(*r) for r in rows.fetchall()]

    def active(self) -> dict[str, list[str]]:
        """Each item's raised conditions."""
        found: dict[str, list[str]] = {}
        with self.catalog.read() as db:
            rows = db.execute("SELECT item, condition FROM alert_state ORDER BY item, condition")
            for item, condition in rows.fetchall():
                found.setdefault(str(item), []).append(str(condition))
        return found

    @staticmethod
    def raise_(
        db: Db,
        item: str,
        condition: str,
        detail: str,
        now: float,
        about: dict[str, Any],
    ) -> bool:
        """Raise ``condition`` for ``item`` (inside the caller's transaction); True if new."""
        cur = db.execute(
            "INSERT INTO alert_state (item, condition, since, detail) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (item, condition, now, detail),
        )
        if cur.rowcount != 1:
            return False
        notify(db, now, {**about, "event": condition, "item": item, "detail": detail})
        return True

    @staticmethod
    def recover(
        db: Db, item: str, now: float, about: dict[str, Any], what: str = "backed up again"
    ) -> bool:
        rows = db.execute(
            "SELECT condition FROM alert_state WHERE item = ? ORDER BY condition", (item,)
        ).fetchall()
        if not rows:
            return False
        db.execute("DELETE FROM alert_state WHERE item = ?", (item,))
        was = [str(r[0]) for r in rows]
        detail = f"{what} (was {', '.join(was)})"
        notify(
            db, now, {**about, "event": "recovered", "item": item, "detail": detail, "cleared": was}
        )
        return True

    def deliver(self, now: float) -> int:
        """Send every notice not yet accepted; returns how many were sent."""
        with self.catalog.read() as db:
            rows = db.execute(
                "SELECT o.id, o.body, o.attempts, t.id, t.kind, t.address, t.smtp"
                " FROM alert_outbox o JOIN alert_targets t ON t.id = o.target WHERE o.sent IS NULL"
                " AND o.attempts < ? ORDER BY o.id LIMIT 100",
                (MAX_ATTEMPTS,),
            ).fetchall()
        sent = 0
        for notice_id, body, attempts, *target in rows:
            # taken by counting the attempt first: another server's pass skips it
            with self.catalog.tx() as db:
                taken = db.execute(
                    "UPDATE alert_outbox SET attempts = attempts + 1"
                    " WHERE id = ? AND attempts = ? AND sent IS NULL",
                    (notice_id, attempts),
                ).rowcount
            if taken != 1:
                continue
            error = send(Target(*target), json.loads(str(body)))
            with self.catalog.tx() as db:
                db.execute(
                    "UPDATE alert_outbox SET sent = ?, error = ? WHERE id = ?",
                    (None if error else now, error, notice_id),
                )
            sent += error is None
        return sent


def notify(db: Db, now: float, body: dict[str, Any]) -> None:
    """Queue a notice to every target (inside the caller's transaction)."""
    body = {
        **body,
        "time": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        "server": socket.gethostname(),
    }
    targets = db.execute("SELECT id FROM alert_targets").fetchall()
    db.executemany(
        "INSERT INTO alert_outbox (target, created, body) VALUES (?, ?, ?)",
        [(int(t[0]), now, json.dumps(body)) for t in targets],
    )


def subject(body: dict[str, Any]) -> str:
    return f"[strongroom] {body.get('item')}: {body.get('event')}: {body.get('detail')}"


def send(target: Target, body: dict[str, Any]) -> str | None:
    """Deliver one notice; the error as one line, or None when it was accepted."""
    try:
        if target.kind == "webhook":
            _post(target.address, body)
        else:
            _mail(target.address, target.smtp or "", body)
    except (OSError, smtplib.SMTPException, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"[:500]
    return None


def _post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_S) as reply:
        reply.read()


def _mail(address: str, smtp: str, body: dict[str, Any]) -> None:
    where = _smtp_address(smtp)
    if where is None:
        raise ValueError(f"invalid SMTP address {smtp!r}")
    msg = EmailMessage()
    msg["From"] = f"strongroom@{socket.gethostname()}"
    msg["To"] = address
    msg["Subject"] = subject(body)
    msg.set_content(json.dumps(body, indent=2) + "\n")
    with smtplib.SMTP(where[0], where[1], timeout=SEND_TIMEOUT_S) as conn:
        conn.send_message(msg)
