"""Objects written without the key, or replayed under another name, are rejected."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from strongroom.errors import IntegrityError
from strongroom.storage import MemoryBackend
from strongroom.storage.names import content_digest
from strongroom.vault import PointManifest, Vault, check_vault
from strongroom.vault.envelope import MAGIC_DELETED, MAGIC_INDEX, MAGIC_POINT, seal_object
from strongroom.vault.forget import soft_delete
from strongroom.vault.index import encode_index
from strongroom.vault.tombstones import Tombstone
from tests.conftest import PASSPHRASE
from tests.vault.helpers import Written, random_chunks, write_point


@pytest.fixture
def vault(make_vault: Callable[..., Vault]) -> Vault:
    v: Vault = make_vault(MemoryBackend())
    return v


@pytest.fixture
def written(vault: Vault) -> Written:
    return write_point(vault, random_chunks(1, 3), source="real")


def put_named(vault: Vault, prefix: str, stored: bytes | bytearray) -> str:
    name = prefix + content_digest(stored).hex()
    vault.backend.put(name, stored)
    return name


def reopen(vault: Vault, strict: bool = True) -> Vault:
    return Vault.open(vault.backend, PASSPHRASE, strict=strict)


def test_point_sealed_by_another_vault_is_rejected(
    vault: Vault, written: Written, make_vault: Callable[..., Vault]
) -> None:
    other = make_vault(MemoryBackend())
    manifest = PointManifest(kind="files", source="evil", roots=written.point.manifest.roots)
    stored = seal_object(MAGIC_POINT, other.keys.point_key, other.vault_id, manifest.encode())
    name = put_named(vault, "points/", stored)
    with pytest.raises(IntegrityError, match=name.rsplit("/", 1)[-1]):
        reopen(vault).points()
    report = check_vault(reopen(vault, strict=False))
    assert any(p.name == name and "authentication" in p.message for p in report.errors)


def test_point_with_a_guessed_key_is_rejected(vault: Vault, written: Written) -> None:
    manifest = PointManifest(kind="files", source="evil", roots=written.point.manifest.roots)
    stored = seal_object(MAGIC_POINT, os.urandom(32), vault.vault_id, manifest.encode())
    put_named(vault, "points/", stored)
    with pytest.raises(IntegrityError, match="authentication failed"):
        reopen(vault).points()


def test_index_without_the_key_fails_open(vault: Vault, written: Written) -> None:
    stored = seal_object(MAGIC_INDEX, os.urandom(32), vault.vault_id, encode_index([]))
    name = put_named(vault, "index/", stored)
    with pytest.raises(IntegrityError, match=name.rsplit("/", 1)[-1]):
        reopen(vault)
    assert any(p.name == name for p in check_vault(reopen(vault, strict=False)).errors)


def test_manifest_replayed_under_a_new_name(vault: Vault, written: Written) -> None:
    stored = vault.backend.get(f"points/{written.point.point_id}")
    vault.backend.put("points/" + "0" * 64, stored)
    with pytest.raises(IntegrityError, match="does not match its name"):
        reopen(vault).points()


def test_index_object_replayed_under_a_new_name(vault: Vault, written: Written) -> None:
    name = next(vault.backend.list("index/")).name
    vault.backend.put("index/" + "1" * 64, vault.backend.get(name))
    with pytest.raises(IntegrityError, match="does not match its name"):
        reopen(vault)


def test_tombstone_replayed_against_another_point(vault: Vault, written: Written) -> None:
    victim = write_point(vault, random_chunks(2, 2), source="victim")
    stone = soft_delete(vault, written.point, "real")
    stored = vault.backend.get(stone.name)
    vault.backend.put(f"deleted/{victim.point.point_id}", stored)
    fresh = reopen(vault)
    visible = {p.point_id for p in fresh.points()}
    assert victim.point.point_id in visible and written.point.point_id not in visible
    report = check_vault(fresh)
    assert any("replayed" in p.message for p in report.errors)


def test_tombstone_without_the_key_is_ignored(vault: Vault, written: Written) -> None:
    forged = Tombstone.new(written.point.point_id, 0, "forged")
    payload = seal_object(MAGIC_DELETED, os.urandom(32), vault.vault_id, b"{}")
    vault.backend.put(forged.name, payload)
    fresh = reopen(vault)
    assert written.point.point_id in {p.point_id for p in fresh.points()}
    assert any(p.name == forged.name for p in check_vault(fresh).errors)
