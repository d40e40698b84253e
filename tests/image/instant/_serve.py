"""Running ``strongroom serve`` as a real process, and hashing a vault's files."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import PASSPHRASE


def sr_env(vault: Path) -> dict[str, str]:
    return dict(os.environ, STRONGROOM_VAULT=str(vault), STRONGROOM_PASSWORD=PASSPHRASE)


@contextmanager
def serving(vault: Path, *args: str | Path, count: int = 2) -> Iterator[dict[str, str]]:
    """``strongroom serve ARGS`` until the block ends; yields {export: uri}."""
    command = [sys.executable, "-m", "strongroom.cli.main", "serve", *map(str, args)]
    proc = subprocess.Popen(
        command, env=sr_env(vault), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        uris: dict[str, str] = {}
        while len(uris) < count:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"serve ended ({proc.wait()}): {proc.stderr.read()}")
            name, uri = line.split()
            uris[name] = uri
        yield uris
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def vault_hashes(vault: Path) -> dict[str, str]:
    """Every vault file but the locks (a reader writes its lock): path -> SHA-256."""
    out = {}
    for path in sorted(vault.rglob("*")):
        rel = path.relative_to(vault)
        if path.is_file() and rel.parts[0] != "locks":
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def wait_for(predicate: object, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
