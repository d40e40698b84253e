"""The catalog's mirror of recovery points' plain facts, for the dashboard.

The server cannot decrypt a point, so the client sends what the dashboard shows (kind, time,
consistency, tags, bytes added; ``storage/served.py``) in a header of the point's put, and
the server keeps it here once the put has succeeded.  It is a display aid the committing
token vouches for, never trusted for a decision: retention uses the storage's times, and
whether a point exists or is forgotten is read from the storage, not from this table.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from strongroom.server.auth import ApiError

if TYPE_CHECKING:
    from strongroom.server.catalog import Catalog

MAX_HEADER = 8192
_KINDS = ("vm", "disk", "files")


@dataclass(frozen=True, slots=True)
class PointFacts:
    point: str
    source: str
    kind: str
    time: str
    consistency: str
    tags: list[str]
    added: int | None


def parse(point: str, source: str, header: str) -> PointFacts:
    """The facts of a put's header; 400 if they are not what a client sends."""
    try:
        doc = json.loads(unquote(header[:MAX_HEADER], errors="strict"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "the point's facts header is not percent-encoded JSON") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "the point's facts header is not a JSON object")
    tags, added = doc.get("tags", []), doc.get("added")
    strings = (doc.get("kind"), doc.get("time"), doc.get("consistency"))
    if (
        not all(isinstance(s, str) and len(s) <= 100 for s in strings)
        or doc.get("kind") not in _KINDS
        or not isinstance(tags, list)
        or not all(isinstance(t, str) and len(t) <= 200 for t in tags)
        or not (added is None or (isinstance(added, int) and added >= 0))
    ):
        raise ApiError(400, "the point's facts header has a wrong field")
    kind, when, consistency = (str(s) for s in strings)
    return PointFacts(point, source, kind, when, consistency, [str(t) for t in tags], added)


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


def of_source(catalog: Catalog, vault: str, source: str) -> dict[str, dict[str, Any]]:
    """The mirrored facts of ``source``'s points in ``vault``, by point id."""
    with catalog.read() as db:
        rows = db.execute(
            "SELECT point, kind, point_time, consistency, tags, added FROM point_meta"
            " WHERE vault = ? AND source = ?",
            (vault, source),
        ).fetchall()
    return {
        str(p): {
            "kind": str(k),
            "time": str(t),
            "consistency": str(c),
            "tags": [str(x) for x in json.loads(str(tags))],
            "added": None if a is None else int(a),
        }
        for p, k, t, c, tags, a in rows
    }
