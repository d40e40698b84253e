"""An alert when a token is used from an address it was never used from.

The scheduler reads the audit log (every authenticated request's row names its token and
client address) from where it stopped, records each (token, address) pair in
``token_addresses``, and sends a ``new-address`` notice when a pair is new and the token had
been used from another address before: a token's first address is where it was meant to be
used, a second one may be a stolen copy.  Each pair is announced once (its row is the
de-duplication), by whichever server inserted it.

Audit rows are committed in batches (``server/auditlog.py``), so the position kept in
``control_marks`` trails the newest row by :data:`LAG_S`: rows near the end are read twice,
which inserting a known pair makes harmless.  The first pass on a catalog (no position yet)
records the history without notices.
"""

from __future__ import annotations

import time
from typing import Any

from strongroom.server.catalog import Catalog
from strongroom.server.catalog_db import Db
from strongroom.server.control.alerts import notify

MARK = "audit-addresses"
LAG_S = 30.0
BATCH = 20_000


def watch_addresses(catalog: Catalog, now: float) -> int:
    """Read the audit log since the last pass; returns how many notices were queued."""
    cutoff = time.time() - LAG_S  # audit rows carry real times
    with catalog.read() as db:  # most passes: nothing new, no write transaction
        row = db.execute("SELECT mark FROM control_marks WHERE name = ?", (MARK,)).fetchone()
        newest = db.execute("SELECT max(id) FROM audit").fetchone()
    if row is not None and (newest[0] is None or int(newest[0]) <= int(row[0])):
        return 0
    with catalog.tx() as db:
        db.execute(
            "INSERT INTO control_marks (name, mark) VALUES (?, -1) ON CONFLICT DO NOTHING",
            (MARK,),
        )
        mark = int(
            db.execute(
                "SELECT mark FROM control_marks WHERE name = ? FOR UPDATE", (MARK,)
            ).fetchone()[0]
        )
        rows = db.execute(
            "SELECT id, token, client, time FROM audit WHERE id > ? AND role IS NOT NULL"
            " AND client IS NOT NULL AND token IS NOT NULL ORDER BY id LIMIT ?",
            (mark, BATCH),
        ).fetchall()
        sent = sum(_pair(db, str(t), str(c), now, mark >= 0) for _, t, c, _ in rows)
        settled = [int(i) for i, _, _, when in rows if float(when) < cutoff]
        if mark < 0 or len(rows) == BATCH:
            settled = [int(r[0]) for r in rows]
        new_mark = max(settled, default=mark)
        if mark < 0:
            new_mark = max(new_mark, 0)
        db.execute("UPDATE control_marks SET mark = ? WHERE name = ?", (new_mark, MARK))
    return sent


def _pair(db: Db, token: str, address: str, now: float, announce: bool) -> bool:
    cur = db.execute(
        "INSERT INTO token_addresses (token, address, first_seen) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (token, address, now),
    )
    if cur.rowcount != 1 or not announce:
        return False
    others = [
        str(r[0])
        for r in db.execute(
            "SELECT address FROM token_addresses WHERE token = ? AND address <> ?"
            " ORDER BY first_seen",
            (token, address),
        ).fetchall()
    ]
    if not others:
        return False
    label = db.execute("SELECT label, role FROM tokens WHERE id = ?", (token,)).fetchone()
    body: dict[str, Any] = {
        "event": "new-address",
        "item": f"token:{token}",
        "token": token,
        "address": address,
        "role": label[1] if label else None,
        "detail": f"token {token} ({label[0] if label else '?'}) used from {address},"
        f" a new address (before: {', '.join(others[:5])})",
    }
    notify(db, now, body)
    return True
