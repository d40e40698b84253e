"""Vault statistics: stored and original sizes, dedup and compression ratios, counts."""

from __future__ import annotations

from collections import Counter
from dataclasses import field

from strongroom.records import dataclass
from strongroom.vault.vault import Vault


@dataclass(frozen=True)
class VaultStats:
    points: int
    points_by_kind: dict[str, int] = field(default_factory=dict)
    packs: int = 0
    pack_bytes: int = 0
    index_objects: int = 0
    chunks: int = 0
    chunk_stored_bytes: int = 0
    chunk_raw_bytes: int = 0
    logical_bytes: int = 0
    extra_copies: int = 0  # chunks stored more than once: the copies beyond the first
    extra_copy_bytes: int = 0

    @property
    def dedup_ratio(self) -> float:
        """Original size of every point over the unique data it needs."""
        return self.logical_bytes / self.chunk_raw_bytes if self.chunk_raw_bytes else 0.0

    @property
    def compression_ratio(self) -> float:
        return self.chunk_raw_bytes / self.chunk_stored_bytes if self.chunk_stored_bytes else 0.0


def vault_stats(vault: Vault) -> VaultStats:
    points = vault.points()
    packs = list(vault.backend.list("data/"))
    chunks, stored, raw, extra, extra_bytes = vault.index.totals()
    return VaultStats(
        points=len(points),
        points_by_kind=dict(Counter(p.manifest.kind for p in points)),
        packs=len(packs),
        pack_bytes=sum(p.size for p in packs),
        index_objects=sum(1 for _ in vault.backend.list("index/")),
        chunks=chunks,
        chunk_stored_bytes=stored,
        chunk_raw_bytes=raw,
        logical_bytes=sum(int(p.manifest.summary.get("logical_bytes", 0)) for p in points),
        extra_copies=extra,
        extra_copy_bytes=extra_bytes,
    )
