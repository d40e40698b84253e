"""The table of the dashboard's mirror of points' plain facts (catalog schema version 6;
see :mod:`strongroom.server.pointmeta`).  ``point_time``: ``time`` is a word PostgreSQL
treats specially in some places, and this is the point's own time, not the row's."""

from __future__ import annotations

SCHEMA_6 = """
CREATE TABLE IF NOT EXISTS point_meta (
    vault TEXT NOT NULL, point TEXT NOT NULL, source TEXT NOT NULL, kind TEXT NOT NULL,
    point_time TEXT NOT NULL, consistency TEXT NOT NULL, tags TEXT NOT NULL,
    added INTEGER, committed REAL NOT NULL, PRIMARY KEY (vault, point));
CREATE INDEX IF NOT EXISTS point_meta_source ON point_meta (vault, source);
"""

# Version 9: the raw (uncompressed) bytes of a point's new chunks and its logical size, which
# the dashboard's dedup and compression factors need; a table of its own (no row for points
# older clients sent) so the script stays idempotent like the others.  And the deletions in
# the audit log, which the points' verify state reads on every page (a prune's repack,
# ``server/web/verifystate.py``): a partial index, so other requests' rows cost nothing more.
SCHEMA_REDUCTION = """
CREATE TABLE IF NOT EXISTS point_counts (
    vault TEXT NOT NULL, point TEXT NOT NULL, raw_added INTEGER, logical_bytes INTEGER,
    PRIMARY KEY (vault, point));
CREATE INDEX IF NOT EXISTS audit_deletes ON audit (vault, time) WHERE action = 'delete';
"""
