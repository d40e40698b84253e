"""The control plane's upkeep tables (one catalog migration; SQL for SQLite and PostgreSQL).

- ``vault_schedules``: each vault's verify schedule (``strongroom vault-schedule set``).
- ``object_checks``: every content-named object of a vault (packs, index objects, points)
  with when it was first seen and last verified, and the damage found, so that verify can read
  a rotating subset and still reach each object within the vault's ``verify_days``.
- ``token_addresses``: the client addresses each token was used from (alerts on a new one);
  ``control_marks``: how far the scheduler has read the audit log.
- ``point_sizes``: the logical size of each point a control-plane job made (dedup ratio);
  ``vault_sizes``: each vault's stored bytes, measured by a listing now and then.
- indexes the list endpoints need with a long job history (``bench/control.py``).
"""

from __future__ import annotations

SCHEMA_UPKEEP = """
CREATE TABLE IF NOT EXISTS vault_schedules (
    vault TEXT PRIMARY KEY, verify TEXT NOT NULL, verify_days REAL NOT NULL,
    next_verify REAL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS object_checks (
    vault TEXT NOT NULL, name TEXT NOT NULL, first_seen REAL NOT NULL, checked REAL,
    error TEXT, PRIMARY KEY (vault, name));
CREATE TABLE IF NOT EXISTS token_addresses (
    token TEXT NOT NULL, address TEXT NOT NULL, first_seen REAL NOT NULL,
    PRIMARY KEY (token, address));
CREATE TABLE IF NOT EXISTS control_marks (
    name TEXT PRIMARY KEY, mark INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS point_sizes (
    vault TEXT NOT NULL, point TEXT NOT NULL, logical INTEGER NOT NULL,
    PRIMARY KEY (vault, point));
CREATE TABLE IF NOT EXISTS vault_sizes (
    vault TEXT PRIMARY KEY, stored INTEGER NOT NULL, objects INTEGER NOT NULL,
    logical INTEGER NOT NULL, measured REAL NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_kind_item ON jobs (kind, item, state, id);
"""
