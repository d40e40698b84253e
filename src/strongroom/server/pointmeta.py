"""The catalog's mirror of recovery points' plain facts, for the dashboard.

The server cannot decrypt a point, so the client sends what the dashboard shows (kind, time,
consistency, tags, bytes added, raw and logical bytes; ``storage/served.py``) in a header of
the point's put, and the server keeps it here once the put has succeeded.  It is a display aid
the committing token vouches for, never trusted for a decision: retention uses the storage's
times, and whether a point exists or is forgotten is read from the storage, not from this table.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from strongroom.records import dataclass
from strongroom.server.auth import ApiError

if TYPE_CHECKING:
    from strongroom.server.catalog import Catalog

MAX_HEADER = 8192
MAX_COUNT = 2**62
"""Byte counts above this are refused (a catalog integer has 64 bits)."""
_KINDS = ("vm", "disk", "files")
_COUNTS = ("added", "raw", "logical")


@dataclass(frozen=True, slots=True)
class PointFacts:
    point: str
    source: str
    kind: str
    time: str
    consistency: str
    tags: list[str]
    added: int | None
    """Bytes the backup stored (its new chunks, compressed)."""
    raw: int | None = None
    """The same new chunks' bytes before compression (clients since schema version 9)."""
    logical: int | None = None
    """The point's logical size: its files' bytes, or its disks' data bytes."""


def _count(n: object) -> bool:
    return n is None or (type(n) is int and 0 <= n <= MAX_COUNT)


def parse(point: str, source: str, header: str) -> PointFacts:
    """The facts of a put's header; 400 if they are not what a client sends."""
    try:
        doc = json.loads(unquote(header[:MAX_HEADER], errors="strict"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "the point's facts header is not percent-encoded JSON") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "the point's facts header is not a JSON object")
    tags, counts = doc.get("tags", []), [doc.get(k) for k in _COUNTS]
    strings = (doc.get("kind"), doc.get("time"), doc.get("consistency"))
    if (
        not all(isinstance(s, str) and len(s) <= 100 for s in strings)
        or doc.get("kind") not in _KINDS
        or not isinstance(tags, list)
        or not all(isinstance(t, str) and len(t) <= 200 for t in tags)
        or not all(_count(n) for n in counts)
    ):
        raise ApiError(400, "the point's facts header has a wrong field")
    kind, when, consistency = (str(s) for s in strings)
    added, raw, logical = (None if n is None else int(n) for n in counts)
    return PointFacts(
        point, source, kind, when, consistency, [str(t) for t in tags], added, raw, logical
    )


def record(catalog: Catalog, vault: str, facts: PointFacts) -> None:
    with catalog.tx() as db:
        db.execute(
            "INSERT INTO point_meta VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                vault,
                facts.point,
                facts.source,
                facts.kind,
                facts.time,
                facts.consistency,
                json.dumps(facts.tags),
                facts.added,
                time.time(),
            ),
        )
        if facts.raw is not None or facts.logical is not None:
            db.execute(
                "INSERT INTO point_counts VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (vault, facts.point, facts.raw, facts.logical),
            )


def of_source(catalog: Catalog, vault: str, source: str) -> dict[str, dict[str, Any]]:
    """The mirrored facts of ``source``'s points in ``vault``, by point id."""
    with catalog.read() as db:
        rows = db.execute(
            "SELECT m.point, kind, point_time, consistency, tags, added, raw_added, logical_bytes"
            " FROM point_meta m LEFT JOIN point_counts c ON c.vault = m.vault AND c.point = m.point"
            " WHERE m.vault = ? AND source = ?",
            (vault, source),
        ).fetchall()
    return {
        str(p): {
            "kind": str(k),
            "time": str(t),
            "consistency": str(c),
            "tags": [str(x) for x in json.loads(str(tags))],
            "added": None if a is None else int(a),
            "raw": None if r is None else int(r),
            "logical": None if n is None else int(n),
        }
        for p, k, t, c, tags, a, r, n in rows
    }
