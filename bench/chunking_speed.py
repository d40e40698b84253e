"""Throughput of the chunking layer: ContentChunker streaming from a file, and is_zero.

Usage: python bench/chunking_speed.py [--mib 512] [--dir /tmp]

The data file is written once (random bytes) and read back through the page cache, so the
figures are the chunker's CPU throughput, not the disk's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from strongroom.chunking import ContentChunker, is_zero

MIB = 1024 * 1024


def write_random(path: Path, size_mib: int) -> None:
    with path.open("wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(MIB))


def consume(chunks: Iterable[bytes | memoryview]) -> int:
    return sum(len(chunk) for chunk in chunks)


def timed(label: str, size: int, work: Callable[[], object]) -> None:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    print(f"{label:<44} {size / best / 1e6:10.0f} MB/s")


def bench_cdc(path: Path, size: int) -> None:
    chunker = ContentChunker()

    def stream(copy: bool) -> Callable[[], object]:
        def run() -> int:
            with path.open("rb", buffering=0) as f:
                return consume(chunker.chunk_file(f, copy=copy))

        return run

    with path.open("rb", buffering=0) as f:
        count = sum(1 for _ in chunker.chunk_file(f, copy=False))
    print(f"ContentChunker defaults: {chunker.params}, {count} chunks")
    timed("ContentChunker.chunk_file (views)", size, stream(False))
    timed("ContentChunker.chunk_file (bytes copies)", size, stream(True))
    data = path.read_bytes()
    timed("ContentChunker.chunk_bytes (in memory)", size, lambda: chunker.chunk_bytes(data))


def bench_is_zero(size: int) -> None:
    zeros = memoryview(bytearray(size))
    blocks = [zeros[i : i + MIB] for i in range(0, size, MIB)]
    timed("is_zero, 1 MiB zero buffers", size, lambda: all(map(is_zero, blocks)))
    last = bytearray(MIB)
    last[-1] = 1
    late = [memoryview(last)] * (size // MIB)
    timed("is_zero, 1 MiB buffers, non-zero last byte", size, lambda: any(map(is_zero, late)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512, help="data size in MiB (512)")
    parser.add_argument("--dir", type=Path, default=None, help="folder for the data file")
    args = parser.parse_args()
    size = args.mib * MIB
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "random.bin"
        write_random(path, args.mib)
        bench_cdc(path, size)
    bench_is_zero(size)


if __name__ == "__main__":
    main()
