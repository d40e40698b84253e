"""A vault's deduplication and compression factors, from what clients send with each point.

The server cannot read chunks, so the counts come from the client's chunk writer, sent in
the point's facts header (:mod:`strongroom.server.pointmeta`): ``raw`` and ``added`` are
the bytes of the chunks the backup newly stored, before and after compression; ``logical``
is the point's size.  Then

- **compression** = the sum of ``raw`` over the sum of ``added``, over every point the
  mirror holds for the vault (forgotten and pruned ones too: what was written, compressed);
- **unique raw bytes** = the vault's stored bytes (its packs, index objects and points, as
  the control plane's usage listing measured them) times the compression factor;
- **dedup** = the live points' ``logical`` bytes over the unique raw bytes.

Their product is the live points' logical bytes over the stored bytes.  A live point whose
facts lack ``logical``, or a vault with no point carrying ``raw`` (clients before these
fields), leaves the overview with the product of the job history only (it says why).
"""

from __future__ import annotations

import logging

from strongroom.errors import StorageError
from strongroom.records import dataclass
from strongroom.server.auth import ApiError
from strongroom.server.catalog import Catalog
from strongroom.server.control.retention import SYSTEM
from strongroom.server.vaults import VaultRegistry

log = logging.getLogger("strongroom.server")


@dataclass(frozen=True, slots=True)
class Factors:
    dedup: float | None
    compression: float | None
    why: str = ""
    """Why the factors are not shown (None factors), for the overview's note."""


def factors(catalog: Catalog, registry: VaultRegistry, vault: str, stored: int | None) -> Factors:
    """``stored``: the vault's content bytes now (``control.usage``), None if not measured."""
    live = _live(registry, vault)
    if live is None:
        return Factors(None, None, "the vault's points could not be listed")
    with catalog.read() as db:
        rows = db.execute(
            "SELECT m.point, added, raw_added, logical_bytes FROM point_meta m LEFT JOIN"
            " point_counts c ON c.vault = m.vault AND c.point = m.point WHERE m.vault = ?",
            (vault,),
        ).fetchall()
    raw = sum(int(r) for _, a, r, _ in rows if r is not None and a is not None)
    added = sum(int(a) for _, a, r, _ in rows if r is not None and a is not None)
    sizes = {str(p): n for p, _, _, n in rows}
    if not live:
        return Factors(None, None, "no live points")
    if any(sizes.get(p) is None for p in live):
        return Factors(None, None, "a point from an older client has no logical size")
    if not raw or not added:
        return Factors(None, None, "no point from a client that sends its raw bytes")
    if not stored:
        return Factors(None, None, "the vault's size is not measured yet")
    compression = raw / added
    logical = sum(int(sizes[p] or 0) for p in live)
    return Factors(logical / (stored * compression), compression)


def _live(registry: VaultRegistry, vault: str) -> set[str] | None:
    gateway = registry.gateway(vault, SYSTEM)
    if gateway is None:
        return None
    try:
        stones = {i.name.rpartition("/")[2] for i in gateway.backend.list("deleted/")}
        names = {i.name.rpartition("/")[2] for i in gateway.backend.list("points/")}
    except (StorageError, ApiError) as exc:
        log.warning("points of vault %s not listed: %s", vault, exc)
        return None
    return names - stones
