"""Tombstones the control plane's retention granted an agent's token (see
:mod:`strongroom.server.control.retention`); the storage gateway asks here."""

from __future__ import annotations

from strongroom.server.catalog import Catalog, TokenRow


def granted(catalog: Catalog, vault: str, name: str, token: TokenRow) -> bool:
    """May ``token`` write the tombstone ``name``: did the server's retention grant it?"""
    point = name.rpartition("/")[2]
    with catalog.read() as db:
        row = db.execute(
            "SELECT 1 FROM tombstone_grants WHERE vault = ? AND point = ? AND token = ?",
            (vault, point, token.id),
        ).fetchone()
    return row is not None
