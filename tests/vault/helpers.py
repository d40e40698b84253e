"""Building blocks for vault tests: write a few points with known content."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from strongroom.vault import PointManifest, RecoveryPoint, Vault


@dataclass
class Written:
    point: RecoveryPoint
    chunks: dict[bytes, bytes]


def random_chunks(seed: int, count: int, size: int = 64 * 1024) -> list[bytes]:
    """Half random, half compressible chunks."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if i % 2:
            out.append(rng.randbytes(size))
        else:
            words = [rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(size // 6)]
            out.append((" ".join(words)).encode()[:size])
    return out


def write_point(
    vault: Vault,
    datas: list[bytes],
    source: str = "test",
    kind: str = "files",
    time: str | None = None,
) -> Written:
    writer = vault.writer()
    ids = [writer.put(d).chunk_id for d in datas]
    root = vault.put_tree(writer, ids, b"body:" + source.encode())
    writer.flush()
    writer.close()
    manifest = PointManifest(
        kind=kind,
        source=source,
        roots=[root.hex()],
        summary={"logical_bytes": sum(map(len, datas))},
    )
    if time is not None:
        manifest = replace(manifest, time=time)
    point = vault.save_point(manifest)
    return Written(point, dict(zip(ids, datas, strict=True)))
