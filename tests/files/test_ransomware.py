"""Back up, let "ransomware" overwrite and delete, diff names exactly that, restore undoes it."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from strongroom.files import (
    BackupOptions,
    RestoreOptions,
    backup_files,
    diff_live,
    diff_points,
    restore_files,
)
from strongroom.vault import Vault
from tests.files._support import assert_same, snapshot


def test_ransomware_diff_and_restore(tmp_path: Path, vault: Vault) -> None:
    rng = random.Random(3)
    src = tmp_path / "data"
    for d in range(5):
        (src / f"dir{d}").mkdir(parents=True)
        for i in range(20):
            (src / f"dir{d}" / f"doc{i}.txt").write_bytes(rng.randbytes(rng.randint(10, 400_000)))
    time.sleep(0.2)
    before = snapshot(src)
    good = backup_files(vault, BackupOptions([str(src)], source="victim"))

    # Encrypt some files in place keeping size and mtime, delete others and a whole folder.
    victims = [src / "dir0" / f"doc{i}.txt" for i in range(5)] + [src / "dir3" / "doc7.txt"]
    for p in victims:
        st = p.stat()
        with open(p, "r+b") as f:
            f.write(rng.randbytes(min(st.st_size, 4096)))
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    deleted = [src / "dir1" / "doc3.txt", src / "dir2" / "doc19.txt"]
    for p in deleted:
        p.unlink()
    for p in (src / "dir4").iterdir():
        p.unlink()
    (src / "dir4").rmdir()
    (src / "dir2" / "README-RANSOM.txt").write_text("pay up")

    point = vault.resolve_point(good.point_id)
    live = {(c.path, c.change) for c in diff_live(vault, point, str(src))}
    expected = {(str(p), "modified") for p in victims}
    expected |= {(str(p), "removed") for p in deleted}
    expected |= {(str(src / "dir4"), "removed")}
    expected |= {(str(src / "dir4" / f"doc{i}.txt"), "removed") for i in range(20)}
    expected |= {(str(src / "dir2" / "README-RANSOM.txt"), "added")}
    expected |= {(str(src / d), "metadata") for d in ("dir1", "dir2")}  # their mtimes
    expected |= {(str(src), "metadata")}
    assert live == expected

    time.sleep(0.2)
    bad = backup_files(vault, BackupOptions([str(src)], source="victim"))
    between = {
        (c.path, c.change)
        for c in diff_points(vault, point, vault.resolve_point(bad.point_id))
        if c.change != "metadata"
    }
    assert between == {e for e in expected if e[1] != "metadata"}

    restore_files(vault, point, RestoreOptions("/", [str(src)]))
    (src / "dir2" / "README-RANSOM.txt").unlink()
    os.utime(src / "dir2", ns=(before[b"dir2"]["atime"], before[b"dir2"]["mtime"]))
    assert_same(before, snapshot(src))
