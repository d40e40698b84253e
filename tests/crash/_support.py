"""Helpers for the crash and fault suite: run the CLI in a child process (optionally with a
failpoint that SIGKILLs it), build source trees and disk images, compare restores."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from strongroom.storage import LocalBackend
from strongroom.vault import CheckReport, Vault, check_vault
from tests.conftest import PASSPHRASE

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, object]:
        doc: dict[str, object] = json.loads(self.out)
        return doc


def cli(
    vault: Path, *args: str, failpoint: str | None = None, env: dict[str, str] | None = None
) -> Run:
    """``strongroom ARGS --vault VAULT`` in a child process."""
    child_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "STRONGROOM_PASSWORD": PASSPHRASE,
        "STRONGROOM_VAULT": str(vault),
        "XDG_CACHE_HOME": str(vault.parent / "cache"),
        **(env or {}),
    }
    child_env.pop("STRONGROOM_FAILPOINT", None)
    if failpoint is not None:
        child_env["STRONGROOM_FAILPOINT"] = failpoint
    proc = subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", *args],
        check=False,
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def ok(run: Run) -> Run:
    assert run.code == 0, f"exit {run.code}: {run.err or run.out}"
    return run


def killed(run: Run) -> None:
    assert run.code == -signal.SIGKILL, f"not killed (exit {run.code}): {run.err or run.out}"


def init_vault(path: Path, pack_mib: int = 1) -> None:
    ok(cli(path, "init", "--kdf-memory", "1", "--kdf-time", "1", "--pack-size", str(pack_mib)))


def open_vault(path: Path, strict: bool = True) -> Vault:
    return Vault.open(LocalBackend(path), PASSPHRASE, strict=strict)


def checked(path: Path, read_data: bool = True) -> CheckReport:
    report = check_vault(open_vault(path, strict=False), read_data=read_data)
    assert report.ok, [f"{p.name}: {p.message}" for p in report.errors]
    return report


def make_tree(root: Path, seed: int, files: int = 12, size: int = 400_000) -> None:
    """Random files of varied sizes (half compressible) in a couple of folders."""
    rng = random.Random(seed)
    for i in range(files):
        folder = root / f"d{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        n = rng.randrange(size // 4, size)
        data = rng.randbytes(n) if i % 2 else bytes(rng.choice(b"abcd") for _ in range(n // 8)) * 8
        (folder / f"f{seed}-{i}.bin").write_bytes(data)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def snapshot_tree(root: Path) -> dict[str, str]:
    return tree_digest(root)


def restored_tree(vault: Path, point: str, source: Path, target: Path) -> dict[str, str]:
    """Restore a files point and return the digest of what it holds for ``source``."""
    ok(cli(vault, "restore", "files", point, "--target", str(target)))
    return tree_digest(target / source.relative_to("/"))


def make_disk(path: Path, seed: int, size: int = 8 << 20) -> None:
    """A sparse raw image with random data in some 64 KiB-aligned regions."""
    rng = random.Random(seed)
    with path.open("r+b" if path.exists() else "wb") as f:
        f.truncate(size)
        for _ in range(24):
            f.seek(rng.randrange(size // 65536) * 65536)
            f.write(rng.randbytes(rng.randrange(4096, 200_000)))


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unindexed_packs(path: Path) -> list[str]:
    report = check_vault(open_vault(path))
    return [p.name for p in report.problems if "not in any index" in p.message]


def temp_files(path: Path) -> list[Path]:
    return [p for p in path.rglob(".tmp-*")]
