"""Child process for the prune memory test: build a synthetic vault, or prune it and measure.

``build ROOT CHUNKS``: CHUNKS tiny unique data chunks in 1 MiB packs, referenced by 10 points
(each a root tree over subtrees of 1,000 chunks); the oldest 3 points are forgotten, and the
points interleave at the edges so some packs end up partly live (repacked), most wholly live
or wholly dead.

``prune ROOT``: open the vault and prune it; print one JSON line with the chunk count, the
index's size, and the growth of the process's peak RSS (``ru_maxrss``) over open + prune.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from strongroom.storage import LocalBackend
from strongroom.vault import PointManifest, Vault, VaultSettings
from strongroom.vault.forget import soft_delete
from strongroom.vault.prune import PruneOptions, prune
from tests.constants import FAST_KDF, PASSPHRASE

POINTS = 10
PER_TREE = 1000


def build(root: Path, chunks: int) -> None:
    vault = Vault.init(
        LocalBackend(root),
        PASSPHRASE,
        kdf=FAST_KDF,
        settings=VaultSettings(pack_size=1 << 20, soft_delete_days=0),
    )
    per_point = chunks // POINTS
    writer = vault.writer()
    manifests = []
    for p in range(POINTS):
        subtrees = []
        for start in range(p * per_point, (p + 1) * per_point, PER_TREE):
            ids = [
                writer.put(i.to_bytes(8, "little") * 2).chunk_id
                for i in range(start, start + PER_TREE)
            ]
            subtrees.append(vault.put_tree(writer, ids, b""))
        root_tree = vault.put_tree(writer, subtrees, f"point {p}".encode())
        manifests.append(PointManifest(kind="disk", source="synthetic", roots=[root_tree.hex()]))
    writer.flush()
    writer.close()
    points = [vault.save_point(m) for m in manifests]
    for point in points[:3]:
        soft_delete(vault, point, "synthetic")


def measure(root: Path) -> None:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.monotonic()
    vault = Vault.open(LocalBackend(root), PASSPHRASE)
    opened = time.monotonic()
    _, index_peak = vault.index.mapped_bytes()
    report = prune(vault, PruneOptions(grace_seconds=0))
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "chunks": report.chunks,
                "chunks_live": report.chunks_live,
                "index_bytes": vault.index.nbytes(),
                "index_peak": index_peak,
                "rss_growth": rss_peak - rss_before,
                "open_seconds": round(opened - started, 2),
                "prune_seconds": report.duration,
                "packs_deleted": report.packs_deleted,
                "packs_repacked": report.packs_repacked,
                "trees_read": report.trees_read,
                "points_removed": len(report.points_removed),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        measure(Path(sys.argv[2]))
