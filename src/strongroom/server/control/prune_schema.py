"""The prune schedules table (one catalog migration; SQL for SQLite and PostgreSQL): each
vault's prune schedule and the machine whose agent runs it (:mod:`.prunejobs`)."""

from __future__ import annotations

SCHEMA_PRUNE = """
CREATE TABLE IF NOT EXISTS prune_schedules (
    vault TEXT PRIMARY KEY, prune TEXT NOT NULL, machine TEXT NOT NULL,
    grace_hours REAL NOT NULL, next_prune REAL, created REAL NOT NULL);
"""
