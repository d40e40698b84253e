"""Each vault's stored bytes and deduplication ratio, for ``/metrics``.

The stored bytes are a listing of the vault's content-named objects (packs, index objects,
points), cached in ``vault_sizes`` for :data:`USAGE_TTL_S` real seconds (a scrape every 15 s
must not list a large bucket each time; a verify run refreshes it too).  The server cannot
read a point, so the logical size of each point comes from the agent that made it (a files
backup's bytes, an image backup's data bytes; ``point_sizes``): the ratio is the live
points' logical bytes over the stored bytes, for the points control-plane jobs made (a
point made by the CLI counts as stored, not as logical: the ratio then reads low).
"""

from __future__ import annotations

import logging
import time

from strongroom.errors import StorageError
from strongroom.records import dataclass
from strongroom.server.auth import ApiError
from strongroom.server.catalog import Catalog
from strongroom.server.control.retention import SYSTEM
from strongroom.server.vaults import VaultRegistry
from strongroom.storage.backend import ObjectInfo

log = logging.getLogger("strongroom.control")
USAGE_TTL_S = 300.0
CONTENT = ("data/", "index/", "points/")


@dataclass(frozen=True, slots=True)
class Usage:
    vault: str
    stored: int
    objects: int
    logical: int

    @property
    def ratio(self) -> float | None:
        return self.logical / self.stored if self.logical and self.stored else None


def record(catalog: Catalog, vault: str, listing: dict[str, list[ObjectInfo]]) -> Usage:
    """Store a vault's usage from a listing of ``CONTENT`` and ``deleted/``."""
    content = [i for p in CONTENT for i in listing.get(p, [])]
    stones = {i.name.rpartition("/")[2] for i in listing.get("deleted/", [])}
    live = {
        i.name.rpartition("/")[2]
        for i in listing.get("points/", [])
        if i.name.rpartition("/")[2] not in stones
    }
    with catalog.tx() as db:
        sizes = db.execute(
            "SELECT point, logical FROM point_sizes WHERE vault = ?", (vault,)
        ).fetchall()
        logical = sum(int(n) for p, n in sizes if p in live)
        u = Usage(vault, sum(i.size for i in content), len(content), logical)
        db.execute("DELETE FROM vault_sizes WHERE vault = ?", (vault,))
        db.execute(
            "INSERT INTO vault_sizes (vault, stored, objects, logical, measured)"
            " VALUES (?, ?, ?, ?, ?)",
            (vault, u.stored, u.objects, u.logical, time.time()),
        )
    return u


def measure(catalog: Catalog, registry: VaultRegistry, vault: str) -> Usage | None:
    gateway = registry.gateway(vault, SYSTEM)
    if gateway is None:
        return None
    listing = {p: list(gateway.backend.list(p)) for p in (*CONTENT, "deleted/")}
    return record(catalog, vault, listing)


def usages(catalog: Catalog, registry: VaultRegistry) -> list[Usage]:
    """Every vault's usage, measured again where the cached one is older than the TTL."""
    with catalog.read() as db:
        cached = {
            str(r[0]): (Usage(str(r[0]), int(r[1]), int(r[2]), int(r[3])), float(r[4]))
            for r in db.execute(
                "SELECT vault, stored, objects, logical, measured FROM vault_sizes"
            ).fetchall()
        }
    found = []
    for name, _ in catalog.vaults():
        hit = cached.get(name)
        if hit is not None and time.time() - hit[1] < USAGE_TTL_S:
            found.append(hit[0])
            continue
        try:
            u = measure(catalog, registry, name)
        except (StorageError, ApiError) as exc:
            log.warning("vault %s not measured: %s", name, exc)
            u = hit[0] if hit else None
        if u is not None:
            found.append(u)
    return found
