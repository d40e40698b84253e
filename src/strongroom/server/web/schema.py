"""The dashboard's tables (catalog schema version 4): users and their sessions.

A session is kept as the SHA-256 of its id (a copy of the catalog lets nobody take one over),
with its CSRF token and expiry.  No column is named ``user``: PostgreSQL reserves the word.
"""

from __future__ import annotations

SCHEMA_4 = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, password TEXT NOT NULL,
    created REAL NOT NULL, created_by TEXT);
CREATE TABLE IF NOT EXISTS sessions (
    id_sha256 TEXT PRIMARY KEY, username TEXT NOT NULL, csrf TEXT NOT NULL,
    created REAL NOT NULL, expires REAL NOT NULL);
"""
