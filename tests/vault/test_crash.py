"""kill -9 while a backup writes: nothing half-written under a final name, vault still good."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from strongroom.storage import LocalBackend
from strongroom.storage.names import content_digest
from strongroom.vault import Vault, check_vault
from tests.conftest import PASSPHRASE

ROOT = Path(__file__).resolve().parents[2]


def run_and_kill(vault_dir: Path, seed: int, after: float) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.vault.crash_child", str(vault_dir), str(seed)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return [line.split()[0] for line in out.decode().splitlines() if line.strip()]


def test_kill_during_writes(tmp_path: Path, make_vault: Callable[..., Vault]) -> None:
    vault_dir = tmp_path / "v"
    make_vault(LocalBackend(vault_dir), pack_size=512 * 1024)
    rng = random.Random(3)
    committed: list[str] = []
    for seed in range(6):
        committed += run_and_kill(vault_dir, seed, rng.uniform(0.4, 1.6))
    assert committed, "the child never committed a point; lengthen the run"
    listed = {info.name for info in LocalBackend(vault_dir).list()}
    for path in vault_dir.rglob("*"):
        rel = path.relative_to(vault_dir)
        if path.name.startswith(".tmp-"):
            assert str(rel) not in listed, f"temp file {rel} is listed as an object"
        elif path.is_file() and rel.parts[0] in ("data", "index", "points"):
            digest = content_digest(path.read_bytes()).hex()
            assert digest == path.name, f"{rel} is partial or corrupt"
    vault = Vault.open(LocalBackend(vault_dir), PASSPHRASE)
    report = check_vault(vault, read_data=True)
    assert report.ok, report.errors
    assert {p.point_id for p in vault.points()} >= set(committed)
    for point in vault.points():
        refs, _ = vault.read_tree(bytes.fromhex(point.manifest.roots[0]))
        for cid in refs:
            vault.read_chunk(cid)
