"""The ``guestfiles`` scenario: files out of an image point, against the issue's targets.

    python bench/guestfiles.py [--quick] [--workdir DIR]

A sparse disk image (20 GiB; ``--quick``: 2 GiB) gets ext4 (``mkfs.ext4`` on the bare disk)
and is filled through a loop mount: about 5 GiB (``--quick``: 600 MiB) of which a 500 MiB
(``--quick``: 100 MiB) folder of mixed files (many small, some medium, a few large) and a
folder of 2,000 entries.  The image is backed up as a disk point, the mixed folder as a
files point, into one local vault.  Then, with the vault's files dropped from the page cache
before each command (cold):

1. ``strongroom ls POINT /disk/whole/many``: target under 2 s.
2. ``strongroom restore files`` of the mixed folder from the image point and from the files
   point: target at most 2x the time; the bytes the image restore fetched from the vault
   (decrypted chunk bytes, the reader's ``ReadStats``) at most 1.5x the folder's size.

Needs root (loop mount).  Results go to WORKDIR/results/guestfiles-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from measure import evict

PASSWORD = "bench-passphrase"
ROOT = Path(__file__).resolve().parent.parent
EXE = [sys.executable, "-m", "strongroom.cli.main"]
MiB, GiB = 1 << 20, 1 << 30


def env_for(vault: Path) -> dict[str, str]:
    env = {**os.environ, "STRONGROOM_PASSWORD": PASSWORD, "STRONGROOM_VAULT": str(vault)}
    env["PYTHONPATH"] = f"{ROOT / 'src'}:{ROOT}"
    return env


def timed(env: dict[str, str], *args: str | Path) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run([*EXE, *map(str, args)], env=env, capture_output=True, text=True,
                          check=False)  # fmt: skip
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"strongroom {' '.join(map(str, args[:3]))} failed: {done.stderr}")
    return took, done.stdout


def fill_mixed(folder: Path, total: int, rng: random.Random) -> int:
    """Mixed files: a quarter in 1-64 KiB files, a third in 1-8 MiB, the rest in large ones."""
    folder.mkdir(parents=True)
    written, n = 0, 0
    for share, low, high in (
        (0.25, 1 << 10, 64 << 10),
        (0.35, MiB, 8 * MiB),
        (0.4, 32 * MiB, 96 * MiB),
    ):
        budget = int(total * share)
        while budget > 0:
            size = min(budget, rng.randint(low, high))
            sub = folder / f"d{n % 37:02d}"
            sub.mkdir(exist_ok=True)
            (sub / f"f{n:05d}.bin").write_bytes(rng.randbytes(size))
            budget, written, n = budget - size, written + size, n + 1
    return written


def build(work: Path, quick: bool) -> tuple[Path, Path, int]:
    image, mnt = work / "disk.raw", work / "mnt"
    size, used, mixed = (2 * GiB, 600 * MiB, 100 * MiB) if quick else (20 * GiB, 5 * GiB, 500 * MiB)
    with open(image, "wb") as f:
        f.truncate(size)
    subprocess.run(["mkfs.ext4", "-q", "-L", "bench", image], check=True)
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", image, mnt], check=True)
    rng = random.Random(14)
    try:
        folder_bytes = fill_mixed(mnt / "srv" / "mixed", mixed, rng)
        many = mnt / "many"
        many.mkdir()
        for i in range(2000):
            (many / f"entry-{i:04d}.txt").write_text(f"{i}\n")
        bulk = mnt / "bulk"
        bulk.mkdir()
        left, n = used - folder_bytes, 0
        while left > 0:  # 256 MiB files written 64 MiB at a time (randbytes' limit)
            with open(bulk / f"b{n:03d}.bin", "wb") as f:
                for _ in range(4):
                    piece = min(64 * MiB, left)
                    if piece <= 0:
                        break
                    f.write(rng.randbytes(piece))
                    left -= piece
            n += 1
        subprocess.run(["cp", "-a", mnt / "srv" / "mixed", work / "mixed"], check=True)
    finally:
        subprocess.run(["umount", mnt], check=True)
    return image, work / "mixed", folder_bytes


def image_restore_bytes(vault: Path, point: str, target: Path) -> dict[str, float]:
    """The same image restore in-process, for the reader's counters."""
    sys.path.insert(0, str(ROOT / "src"))
    from strongroom.files.restoretypes import RestoreOptions
    from strongroom.guestfiles.restore import restore_guest_files
    from strongroom.guestfiles.tree import GuestPoint
    from strongroom.storage import LocalBackend
    from strongroom.vault import Vault

    v = Vault.open(LocalBackend(vault), PASSWORD)
    try:
        guest = GuestPoint(v, v.resolve_point(point))
        restore_guest_files(guest, RestoreOptions(target, ["/disk/whole/srv/mixed"]))
        return guest.stats.to_dict()
    finally:
        v.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp/strongroom-bench-guest"))
    args = ap.parse_args()
    work = args.workdir
    subprocess.run(["rm", "-rf", work], check=True)
    work.mkdir(parents=True)
    image, mixed, folder_bytes = build(work, args.quick)
    vault = work / "vault"
    env = env_for(vault)
    timed(env, "init", "--kdf-memory", "64", "--kdf-time", "1")
    t_backup, out = timed(env, "backup", "disk", image, "--json")
    img_point = json.loads(out)["point"]
    _, out = timed(env, "backup", "files", mixed, "--json")
    files_point = json.loads(out)["point"]

    evict([vault, image])
    t_ls, out = timed(env, "ls", img_point, "/disk/whole/many")
    assert len(out.split()) == 2000
    evict([vault])
    t_img, _ = timed(
        env, "restore", "files", img_point, "/disk/whole/srv/mixed", "--target", work / "r-img"
    )
    evict([vault])
    t_files, _ = timed(env, "restore", "files", files_point, "--target", work / "r-files")
    evict([vault])
    stats = image_restore_bytes(vault, img_point, work / "r-img2")
    doc = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "image_backup_s": round(t_backup, 2),
        "ls_cold_s": round(t_ls, 3),
        "folder_bytes": folder_bytes,
        "restore_image_s": round(t_img, 2),
        "restore_files_s": round(t_files, 2),
        "restore_ratio": round(t_img / t_files, 2),
        "vault_bytes_ratio": round(stats["bytes_fetched"] / folder_bytes, 3),
        "reader": stats,
    }
    (work / "results").mkdir(exist_ok=True)
    (work / "results" / f"guestfiles-{doc['when']}.json").write_text(json.dumps(doc, indent=1))
    print(json.dumps(doc, indent=1))
    ok = t_ls < 2 and t_img <= 2 * t_files and doc["vault_bytes_ratio"] <= 1.5
    print("targets met" if ok else "a target missed")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
