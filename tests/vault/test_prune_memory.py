"""Prune's memory stays within the index budget (64 bytes per chunk) plus a constant.

Two synthetic vaults (1,000,000 and 2,000,000 chunks, 30 % of them dead) are built and pruned,
each in a fresh child process that reports the growth of its peak RSS over opening the vault
and pruning it.  The difference between the two, per added chunk, is what prune costs per
chunk (the index included); the rest is a constant (loader threads' buffers, packs being
repacked, index objects being written, trees being read).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL, LARGE = 1_000_000, 2_000_000
CONSTANT = 48 << 20


def child(*args: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    out = subprocess.run(
        [sys.executable, "-m", "tests.vault.prune_memory_child", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = out.strip().splitlines()
    doc: dict[str, float] = json.loads(lines[-1]) if lines else {}
    return doc


def measured(tmp_path: Path, chunks: int) -> dict[str, float]:
    root = tmp_path / f"v{chunks}"
    child("build", str(root), str(chunks))
    return child("prune", str(root))


@pytest.mark.slow
def test_prune_memory_per_chunk(tmp_path: Path) -> None:
    small = measured(tmp_path, SMALL)
    large = measured(tmp_path, LARGE)
    n = small["chunks"]
    slope = (large["rss_growth"] - small["rss_growth"]) / (large["chunks"] - n)
    print(
        f"\nprune of {n:.0f} chunks ({small['chunks_live']:.0f} live, {small['trees_read']:.0f} "
        f"trees): peak RSS growth {small['rss_growth'] / 2**20:.1f} MiB = "
        f"{small['rss_growth'] / n:.1f} B/chunk (the index {small['index_peak'] / n:.1f} B/chunk "
        f"at most); {slope:.1f} B per added chunk up to {large['chunks']:.0f}; "
        f"open {small['open_seconds']}s, prune {small['prune_seconds']}s "
        f"({large['prune_seconds']}s for {large['chunks']:.0f})"
    )
    for doc in (small, large):
        assert doc["points_removed"] == 3 and doc["packs_deleted"] > 0
    assert slope <= 64, slope
    assert small["rss_growth"] <= 64 * n + CONSTANT
