"""The dashboard's usage samples (catalog schema version 5): each vault's stored bytes and
capacity over time, for the overview's chart and its estimated date of full."""

from __future__ import annotations

SCHEMA_USAGE = """
CREATE TABLE IF NOT EXISTS vault_usage (
    vault TEXT NOT NULL, taken REAL NOT NULL, used_bytes INTEGER NOT NULL,
    capacity_bytes INTEGER, PRIMARY KEY (vault, taken));
"""
