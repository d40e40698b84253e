"""What a files worker process loads: each backup and restore worker pays for its modules in
start-up CPU and in memory held for the whole run, beside the parent's own copy."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from strongroom.files import BackupOptions
from strongroom.storage import LocalBackend
from strongroom.vault import Vault
from tests.constants import FAST_KDF, PASSPHRASE

# what only the parent needs: the CLI, the key derivation, the files cache (a first backup's
# workers look nothing up), remote storage's URLs, retries and cache, numpy
NOT_IN_A_WORKER = (
    "typer",
    "click",
    "rich",
    "argon2",
    "cryptography",
    "numpy",
    "obstore",
    "sqlite3",
    "subprocess",
    "multiprocessing",
    "random",
    "strongroom.cli",
    "strongroom.image",
    "strongroom.storage.url",
    "strongroom.storage.retry",
    "strongroom.storage.cache",
)


def _loaded(script: str, stdin: bytes = b"") -> set[str]:
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        input=stdin,
        capture_output=True,
        check=True,
    )
    return set(run.stdout.decode().split())


@pytest.mark.parametrize("module", ["strongroom.files.procwork", "strongroom.files.restorework"])
def test_a_worker_loads_none_of_the_parent_s_machinery(module: str) -> None:
    loaded = _loaded(f"import sys, {module}; print(' '.join(sys.modules))")
    assert module in loaded
    assert sorted(set(NOT_IN_A_WORKER) & loaded) == []


def test_a_backup_worker_set_up_as_procwork_does_loads_none_of_it(tmp_path: Path) -> None:
    """The vault opened from its handoff, its writer and the walk made (the walk looks up
    which folders to keep out of a backup: strongroom's caches among them)."""
    vault = Vault.init(LocalBackend(tmp_path / "v"), PASSPHRASE, kdf=FAST_KDF)
    handoff = vault.handoff()
    assert handoff is not None
    given = pickle.dumps((handoff, BackupOptions([str(tmp_path)], processes=0, workers=0)))
    script = """
        import pickle, sys
        from strongroom.files.procwork import WorkerWalker
        from strongroom.vault import open_handoff

        handoff, opts = pickle.loads(sys.stdin.buffer.read())
        vault = open_handoff(handoff)
        writer = vault.writer()
        walker = WorkerWalker(vault, writer, opts)
        print(" ".join(sys.modules))
        walker.pool.shutdown()
        writer.close()
        vault.close()
    """
    loaded = _loaded(script, given)
    assert "strongroom.files.walker" in loaded
    assert sorted(set(NOT_IN_A_WORKER) & loaded) == []
