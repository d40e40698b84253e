"""Shared and exclusive locks, stale detection."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from strongroom.errors import LockConflict
from strongroom.storage import MemoryBackend
from strongroom.vault import Vault
from strongroom.vault.envelope import MAGIC_LOCK, seal_object
from strongroom.vault.locks import STALE_AFTER, list_locks, remove_stale_locks
from tests.conftest import FAST_KDF, PASSPHRASE


@pytest.fixture
def vault() -> Vault:
    return Vault.init(MemoryBackend(), PASSPHRASE, kdf=FAST_KDF)


def fake_lock(
    vault: Vault, *, exclusive: bool, pid: int, age: float, host: str | None = None
) -> None:
    doc = {
        "exclusive": exclusive,
        "host": host or socket.gethostname(),
        "pid": pid,
        "time": time.time() - age,
    }
    stored = seal_object(MAGIC_LOCK, vault.keys.lock_key, vault.vault_id, json.dumps(doc).encode())
    vault.backend.put("locks/" + os.urandom(8).hex(), stored)


def test_shared_locks_coexist_exclusive_does_not(vault: Vault) -> None:
    with vault.lock(), vault.lock(), pytest.raises(LockConflict, match="shared lock"):
        vault.lock(exclusive=True)
    with vault.lock(exclusive=True), pytest.raises(LockConflict, match="exclusive"):
        vault.lock()
    assert list(vault.backend.list("locks/")) == []


def test_stale_locks_are_ignored_and_removable(vault: Vault) -> None:
    fake_lock(vault, exclusive=True, pid=os.getpid(), age=STALE_AFTER + 10, host="elsewhere")
    dead = 2**22 + 12345  # above the default pid_max: no such process
    fake_lock(vault, exclusive=True, pid=dead, age=1)
    with vault.lock(exclusive=True):
        pass
    # acquiring removed the dead process's lock; the silent one stays for prune to remove
    assert len(remove_stale_locks(vault.backend, vault._lock_codec)) == 1
    fake_lock(vault, exclusive=True, pid=os.getpid(), age=1, host="elsewhere")
    with pytest.raises(LockConflict):
        vault.lock()


def test_foreign_objects_under_locks_are_not_locks(vault: Vault) -> None:
    vault.backend.put("locks/bogus", b"not a lock")
    with vault.lock(exclusive=True):
        assert len(list_locks(vault.backend, vault._lock_codec)) == 1


def test_waiting_for_a_lock(vault: Vault) -> None:
    held = vault.lock(exclusive=True)
    start = time.monotonic()
    with pytest.raises(LockConflict):
        vault.lock(wait=0.3)
    assert time.monotonic() - start >= 0.3
    held.release()
    vault.lock(wait=0.3).release()
