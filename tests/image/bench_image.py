"""Benchmark of the image engine (not a test): MB/s of backup and restore, chunk sizes.

    python -m tests.image.bench_image [--dir /tmp/strongroom-bench] [--size-gib 2]
        [--chunk-sizes 1,4] [--formats raw,qcow2] [--restic]

The image is half zeros, a quarter random and a quarter compressible text, in 8 MiB stripes.
For each chunk size and format it times a first backup, an unchanged re-read, an incremental
after scattered small writes (bytes added), and a full restore to a new image.  ``--restic``
times restic (first backup, ``--force`` re-read, restore) on the raw image for comparison.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

from strongroom.image import BackupOptions, RestoreOptions, backup_disk, restore_disk
from strongroom.storage import LocalBackend
from strongroom.vault import KDFParams, Vault, VaultSettings

MiB = 1 << 20
KDF = KDFParams(time_cost=1, memory_kib=1024, parallelism=1)


def make_image(path: Path, size: int) -> None:
    rng = random.Random(7)
    words = [
        bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(5000)
    ]
    corpus = b"\n".join(b" ".join(rng.choices(words, k=12)) for _ in range(250_000))
    with path.open("wb") as f:
        for _ in range(size // (8 * MiB)):
            f.write(bytes(4 * MiB))
            f.write(os.urandom(2 * MiB))
            start = rng.randrange(len(corpus) - 2 * MiB)
            f.write(corpus[start : start + 2 * MiB])


def scatter_writes(path: Path, fmt: str, count: int = 64) -> None:
    """``count`` 4 KiB writes at random offsets, like a guest updating files."""
    rng = random.Random(11)
    size = os.path.getsize(path) if fmt == "raw" else 0
    if fmt != "raw":
        info = subprocess.check_output(["qemu-img", "info", "-f", fmt, str(path)], text=True)
        size = int(info.split("(")[1].split(" bytes")[0])
    commands = []
    for _ in range(count):
        offset = rng.randrange(size // 4096) * 4096
        commands += ["-c", f"write -P {rng.randrange(1, 255)} {offset} 4k"]
    subprocess.run(["qemu-io", "-f", fmt, *commands, str(path)], check=True, capture_output=True)


def timed(fn: object, *args: object, **kwargs: object) -> tuple[float, object]:
    os.sync()  # no writeback of earlier steps in the timing
    started = time.monotonic()
    result = fn(*args, **kwargs)  # type: ignore[operator]
    return time.monotonic() - started, result


def bench(work: Path, image: Path, fmt: str, chunk: int) -> None:
    vault_dir = work / "vault"
    shutil.rmtree(vault_dir, ignore_errors=True)
    vault = Vault.init(LocalBackend(vault_dir), "bench", kdf=KDF, settings=VaultSettings())
    opts = BackupOptions(chunk_size=chunk)
    size = image.stat().st_size if fmt == "raw" else 0
    t1, first = timed(backup_disk, vault, image, opts, fmt=fmt)
    t2, _ = timed(backup_disk, vault, image, opts, fmt=fmt)
    copy = work / f"changed.{fmt}"
    subprocess.run(["cp", "--sparse=always", str(image), str(copy)], check=True)
    scatter_writes(copy, fmt)
    t3, incr = timed(backup_disk, vault, copy, opts, fmt=fmt, source=str(image))
    out = work / f"restored.{fmt}"
    out.unlink(missing_ok=True)
    point = vault.resolve_point(first.point_id)  # type: ignore[attr-defined]
    t4, _ = timed(restore_disk, vault, point, None, out, RestoreOptions(), fmt=fmt)
    logical = first.logical_bytes / MiB  # type: ignore[attr-defined]
    print(
        f"{fmt:5} {chunk // MiB}M  first {t1:5.2f}s {logical / t1:6.0f} MB/s | "
        f"unchanged {t2:5.2f}s {logical / t2:6.0f} MB/s | "
        f"incremental (64 x 4 KiB writes) {t3:5.2f}s +{incr.bytes_new / MiB:6.1f} MiB | "  # type: ignore[attr-defined]
        f"restore {t4:5.2f}s {logical / t4:6.0f} MB/s"
        + (f" (raw size {size // MiB} MiB)" if size else "")
    )
    out.unlink(missing_ok=True)
    copy.unlink()


def restic(work: Path, image: Path) -> None:
    repo = work / "restic"
    shutil.rmtree(repo, ignore_errors=True)
    env = dict(os.environ, RESTIC_PASSWORD="bench", RESTIC_REPOSITORY=str(repo))

    def run(*args: str) -> float:
        os.sync()
        started = time.monotonic()
        subprocess.run(["restic", "-q", *args], check=True, env=env, capture_output=True)
        return time.monotonic() - started

    run("init")
    t1 = run("backup", str(image))
    t2 = run("backup", "--force", str(image))
    target = work / "restic-out"
    shutil.rmtree(target, ignore_errors=True)
    t3 = run("restore", "latest", "--target", str(target))
    shutil.rmtree(target, ignore_errors=True)
    print(f"restic      first {t1:5.2f}s | --force re-read {t2:5.2f}s | restore {t3:5.2f}s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, default=Path("/tmp/strongroom-bench"))
    parser.add_argument("--size-gib", type=int, default=2)
    parser.add_argument("--chunk-sizes", default="1,4")
    parser.add_argument("--formats", default="raw,qcow2")
    parser.add_argument("--restic", action="store_true")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    image = args.dir / "image.raw"
    if not image.exists() or image.stat().st_size != args.size_gib << 30:
        make_image(image, args.size_gib << 30)
    for fmt in args.formats.split(","):
        source = image
        if fmt != "raw":
            source = args.dir / f"image.{fmt}"
            if not source.exists():
                subprocess.run(
                    ["qemu-img", "convert", "-O", fmt, str(image), str(source)], check=True
                )
        for chunk in args.chunk_sizes.split(","):
            bench(args.dir, source, fmt, int(chunk) * MiB)
    if args.restic:
        restic(args.dir, image)


if __name__ == "__main__":
    main()
