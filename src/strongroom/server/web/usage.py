"""Vault usage over time: samples of each vault's stored bytes and capacity, and the date the
vault would be full if it keeps growing as it did (a least-squares line through the samples,
as Proxmox Backup Server estimates it).

A sample is the sum of the sizes of the vault's objects (what the storage holds, after dedup
and compression) and its capacity: a quota an admin set on the vault settings page, else, for
a vault in a local folder, what it holds plus the file system's free space (``statvfs``);
other storage has no capacity the server can know.  :class:`Sampler` takes one per vault
every hour and after each finished backup, on a thread of the server.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time

from strongroom.errors import StorageError
from strongroom.records import dataclass
from strongroom.server.auth import ApiError
from strongroom.server.catalog import Catalog, TokenRow
from strongroom.server.catalog_db import CatalogError
from strongroom.server.control.clock import tick_seconds
from strongroom.server.vaults import VaultRegistry

log = logging.getLogger("strongroom.server")
INTERVAL_S = 3600.0
"""Seconds between two samples of a vault when no backup finished."""
KEEP_S = 400 * 86400.0
"""Samples older than this are dropped: the chart and the fit look at the last year."""
QUOTA_KEY = "quota:"
MAX_SIZE = 2**62
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?B?)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}
_SYSTEM = TokenRow("usage-sampler", "admin", b"", [], "the usage sampler", 0.0, None, None, None)


@dataclass(frozen=True, slots=True)
class Sample:
    taken: float
    used: int
    capacity: int | None


def parse_size(text: str) -> int:
    """``500G``, ``1.5T``, ``2000000`` (bytes; K, M, G, T, P are powers of 1024)."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ApiError(400, f"not a size: {text[:30]!r} (e.g. 500G, 2T or a number of bytes)")
    number, unit = m.group(1), _UNITS[m.group(2).upper()]
    size = int(number) * unit if number.isdigit() else int(float(number) * unit)
    if size > MAX_SIZE:  # a catalog integer has 64 bits
        raise ApiError(400, f"{text[:30]!r} is too large (at most 4 EiB)")
    return size


def quota(catalog: Catalog, vault: str) -> int | None:
    text = catalog.meta(QUOTA_KEY + vault)
    return int(text) if text and text.isdigit() and int(text) > 0 else None


def set_quota(catalog: Catalog, vault: str, size: int | None) -> None:
    catalog.set_meta(QUOTA_KEY + vault, str(size or 0))


def measure(catalog: Catalog, registry: VaultRegistry, vault: str, now: float) -> Sample:
    """The vault's stored bytes and its capacity, as of ``now``."""
    gateway = registry.gateway(vault, _SYSTEM)
    if gateway is None:
        return Sample(now, 0, quota(catalog, vault))
    used = sum(info.size for info in gateway.backend.list(""))
    capacity = quota(catalog, vault)
    root = getattr(gateway.backend, "root", None)
    if capacity is None and root is not None:
        try:
            fs = os.statvfs(root)
        except OSError:
            fs = None
        if fs is not None:
            capacity = used + fs.f_bavail * fs.f_frsize
    return Sample(now, used, capacity)


def record(catalog: Catalog, vault: str, sample: Sample) -> None:
    with catalog.tx() as db:
        db.execute(
            "INSERT INTO vault_usage VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (vault, sample.taken, sample.used, sample.capacity),
        )
        db.execute(
            "DELETE FROM vault_usage WHERE vault = ? AND taken < ?", (vault, sample.taken - KEEP_S)
        )


def samples(catalog: Catalog, vault: str) -> list[Sample]:
    with catalog.read() as db:
        rows = db.execute(
            "SELECT taken, used_bytes, capacity_bytes FROM vault_usage WHERE vault = ?"
            " ORDER BY taken",
            (vault,),
        ).fetchall()
    return [Sample(float(t), int(u), None if c is None else int(c)) for t, u, c in rows]


def full_at(points: list[Sample]) -> float | None:
    """When the least-squares line through the samples reaches the newest capacity; None if
    there are fewer than two samples, no capacity, or usage does not grow."""
    if len(points) < 2 or points[-1].capacity is None:
        return None
    n = len(points)
    t0 = points[0].taken  # centred times keep the sums well inside a float's precision
    xs = [p.taken - t0 for p in points]
    ys = [float(p.used) for p in points]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    if slope <= 0:
        return None
    return t0 + mx + (points[-1].capacity - my) / slope


class Sampler:
    """Samples every vault when its newest sample is an hour old or older than the newest
    finished backup of an item stored in it."""

    def __init__(self, catalog: Catalog, registry: VaultRegistry) -> None:
        self.catalog, self.registry = catalog, registry
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs: dict[str, object] = {}
        """Per vault, the newest finished backup job at its last sample."""

    def due(self, now: float) -> list[str]:
        """The vaults to sample now.  Backups are told by job id, not time: the control
        plane's clock may run faster than the real time samples are taken in."""
        with self.catalog.read() as db:
            newest = dict(
                db.execute("SELECT vault, max(taken) FROM vault_usage GROUP BY vault").fetchall()
            )
            backups = dict(
                db.execute(
                    "SELECT p.vault, max(j.id) FROM jobs j JOIN items i ON i.name = j.item"
                    " JOIN policies p ON p.name = i.policy WHERE j.kind = 'backup'"
                    " AND j.finished IS NOT NULL GROUP BY p.vault"
                ).fetchall()
            )
        found = []
        for vault, _ in self.catalog.vaults():
            last, job = newest.get(vault), backups.get(vault)
            if last is None or now - float(last) >= INTERVAL_S or job != self._jobs.get(vault):
                found.append(vault)
                self._jobs[vault] = job
        return found

    def pass_(self, now: float) -> None:
        for vault in self.due(now):
            try:
                record(self.catalog, vault, measure(self.catalog, self.registry, vault, now))
            except (StorageError, ApiError) as exc:
                log.warning("usage of vault %s not sampled: %s", vault, exc)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="usage", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(tick_seconds()):
            try:
                self.pass_(time.time())
            except CatalogError as exc:
                log.warning("usage sampling failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
