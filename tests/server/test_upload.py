"""Packs stream into a temporary file of the vault and get their name only when complete."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from strongroom.errors import RequestRefused
from strongroom.storage.names import content_digest
from tests.server.conftest import in_process


def pack_name(data: bytes) -> str:
    digest = content_digest(data).hex()
    return f"data/{digest[:2]}/{digest}"


def leftovers(vault: Path) -> list[Path]:
    return [p for p in vault.rglob(".tmp-*")]


def test_a_pack_not_matching_its_name_leaves_nothing(tmp_path: Path) -> None:
    with in_process(tmp_path) as served:
        backup = served.backend("backup")
        data = os.urandom(9 * 1024 * 1024)  # more than two 4 MiB batches
        backup.put(pack_name(data), data)
        with pytest.raises(RequestRefused, match="do not hash to its name"):
            backup.put(pack_name(b"other"), data)
        backup.close()
        vault = tmp_path / "vaults" / "v"
        assert [p.name for p in (vault / "data").rglob("*") if p.is_file()] == [
            pack_name(data).rpartition("/")[2]
        ]
        assert (vault / pack_name(data)).read_bytes() == data
        assert not leftovers(vault)


def test_old_temporary_files_of_a_killed_server_are_removed(tmp_path: Path) -> None:
    vault = tmp_path / "vaults" / "v"
    (vault / "data").mkdir(parents=True)
    old, young = vault / "data" / ".tmp-0123456789abcdef", vault / "data" / ".tmp-fedcba9876543210"
    for f in (old, young):
        f.write_bytes(b"half a pack")
    hours_ago = time.time() - 2 * 3600
    os.utime(old, (hours_ago, hours_ago))
    with in_process(tmp_path) as served:
        restore = served.backend("restore")
        assert list(restore.list("data/")) == []  # the first request opens the vault
        restore.close()
    assert leftovers(vault) == [young]  # a younger one may belong to a running upload
