"""The control plane's tables (catalog schema version 3).

Kept to SQL that SQLite and PostgreSQL both take (``INSERT ... ON CONFLICT DO NOTHING``, no
``AUTOINCREMENT``, times as REAL unix seconds, lists as JSON text): on PostgreSQL
(``server/catalog_db.py``) only the types change (``BIGSERIAL`` ids, ``BIGINT``, ``DOUBLE
PRECISION``, and a ``rowid`` column for ``job_log``'s order).
"""

from __future__ import annotations

SCHEMA_3 = """
CREATE TABLE IF NOT EXISTS machines (
    name TEXT PRIMARY KEY, token TEXT NOT NULL, created REAL NOT NULL,
    last_seen REAL, address TEXT, agent_version TEXT);
CREATE TABLE IF NOT EXISTS policies (
    name TEXT PRIMARY KEY, vault TEXT NOT NULL, schedule TEXT NOT NULL,
    window_start TEXT, window_end TEXT, retries INTEGER NOT NULL, retry_delay REAL NOT NULL,
    consistency TEXT NOT NULL, grace REAL NOT NULL,
    keep_last INTEGER NOT NULL, keep_hourly INTEGER NOT NULL, keep_daily INTEGER NOT NULL,
    keep_weekly INTEGER NOT NULL, keep_monthly INTEGER NOT NULL, keep_yearly INTEGER NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    name TEXT PRIMARY KEY, kind TEXT NOT NULL, machine TEXT NOT NULL, targets TEXT NOT NULL,
    excludes TEXT NOT NULL, policy TEXT NOT NULL, source TEXT NOT NULL, created REAL NOT NULL,
    next_run REAL, due_since REAL, last_success REAL, last_point TEXT);
CREATE INDEX IF NOT EXISTS items_machine ON items (machine);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, item TEXT NOT NULL, kind TEXT NOT NULL, scheduled REAL NOT NULL,
    state TEXT NOT NULL, attempt INTEGER NOT NULL, created REAL NOT NULL, not_before REAL,
    started REAL, finished REAL, heartbeat REAL, agent TEXT,
    bytes_read INTEGER NOT NULL DEFAULT 0, bytes_added INTEGER NOT NULL DEFAULT 0,
    files INTEGER NOT NULL DEFAULT 0, percent REAL, eta REAL, point TEXT, reason TEXT,
    cancel INTEGER NOT NULL DEFAULT 0, payload TEXT NOT NULL DEFAULT '{}',
    UNIQUE (item, kind, scheduled));
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, item);
CREATE INDEX IF NOT EXISTS jobs_item ON jobs (item, id);
CREATE TABLE IF NOT EXISTS job_log (
    job INTEGER NOT NULL, time REAL NOT NULL, line TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS job_log_job ON job_log (job);
CREATE TABLE IF NOT EXISTS alert_targets (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, address TEXT NOT NULL, smtp TEXT,
    created REAL NOT NULL, UNIQUE (kind, address));
CREATE TABLE IF NOT EXISTS alert_state (
    item TEXT NOT NULL, condition TEXT NOT NULL, since REAL NOT NULL, detail TEXT NOT NULL,
    PRIMARY KEY (item, condition));
CREATE TABLE IF NOT EXISTS alert_outbox (
    id INTEGER PRIMARY KEY, target INTEGER NOT NULL, created REAL NOT NULL,
    body TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, sent REAL, error TEXT);
CREATE TABLE IF NOT EXISTS tombstone_grants (
    vault TEXT NOT NULL, point TEXT NOT NULL, token TEXT NOT NULL, job INTEGER NOT NULL,
    PRIMARY KEY (vault, point));
"""
