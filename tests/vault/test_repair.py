"""Corrupted vaults: check names each problem, check --repair restores consistency and keeps
everything that is still intact."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from strongroom.storage import LocalBackend
from strongroom.vault import CheckReport, Vault, check_vault
from strongroom.vault.entries import Entries
from strongroom.vault.forget import soft_delete
from strongroom.vault.index import PackRecord, encode_index
from strongroom.vault.pack import read_pack_header
from strongroom.vault.repair import RepairReport, repair
from strongroom.vault.writer import write_index_object
from tests.conftest import PASSPHRASE
from tests.vault.helpers import Written, random_chunks, write_point


@dataclass
class Setup:
    root: Path
    points: list[Written]

    def vault(self, strict: bool = False) -> Vault:
        return Vault.open(LocalBackend(self.root), PASSPHRASE, strict=strict)

    def packs(self) -> list[Path]:
        return sorted(p for p in (self.root / "data").rglob("*") if p.is_file())

    def pack_of(self, written: Written) -> Path:
        """A pack holding only data of ``written`` (no other point needs it)."""
        vault = self.vault()
        others = {c for w in self.points if w is not written for c in w.chunks}
        for path in self.packs():
            contents = read_pack_header(vault.keys, path.read_bytes(), path.name)
            ids = set(contents.entries.ids())
            if ids and not ids & others and ids <= set(written.chunks):
                return path
        raise AssertionError("no pack of its own")


@pytest.fixture
def setup(tmp_path: Path, make_vault: Callable[..., Vault]) -> Setup:
    root = tmp_path / "v"
    vault = make_vault(LocalBackend(root), pack_size=100_000)
    points = [write_point(vault, random_chunks(s, 8), source=f"s{s}") for s in range(3)]
    return Setup(root, points)


def errors_naming(report: CheckReport, text: str) -> list[str]:
    return [f"{p.name}: {p.message}" for p in report.errors if text in p.name + p.message]


def repaired(setup: Setup) -> tuple[RepairReport, CheckReport]:
    vault = setup.vault()
    result = repair(vault)
    return result, check_vault(setup.vault(strict=True), read_data=True)


def assert_restores(setup: Setup, *points: Written) -> None:
    vault = setup.vault(strict=True)
    for w in points:
        for cid, data in w.chunks.items():
            assert vault.read_chunk(cid) == data


def test_pack_missing_but_indexed(setup: Setup) -> None:
    victim = setup.pack_of(setup.points[1])
    victim.unlink()
    before = check_vault(setup.vault())
    assert errors_naming(before, victim.name)
    result, after = repaired(setup)
    assert any(victim.name in n for n in result.packs_missing)
    assert set(result.damaged_points) == {setup.points[1].point.point_id}
    assert_restores(setup, setup.points[0], setup.points[2])
    # The damaged point is reported, not deleted; forgetting it leaves a clean vault.
    assert not after.ok and set(after.affected_points) == {setup.points[1].point.point_id}
    soft_delete(setup.vault(strict=True), setup.points[1].point, "lost a pack")
    assert check_vault(setup.vault(strict=True)).ok


def test_pack_present_but_not_indexed(setup: Setup) -> None:
    for index in (setup.root / "index").iterdir():
        index.unlink()
    before = check_vault(setup.vault())
    assert any("not in any index" in p.message for p in before.problems)
    assert not before.ok  # the points reference chunks no index lists
    result, after = repaired(setup)
    assert len(result.packs_newly_indexed) == len(setup.packs())
    assert after.ok and not after.problems, after.problems
    assert_restores(setup, *setup.points)


def test_index_pointing_at_a_missing_chunk(setup: Setup) -> None:
    vault = setup.vault()
    victim = setup.packs()[0]
    contents = read_pack_header(vault.keys, victim.read_bytes(), victim.name)
    bogus = Entries.of([(b"\x42" * 32, 0, 0, 0, 40, 64, 10)])
    entries = Entries(contents.entries.data + bogus.data)
    pack_id = bytes.fromhex(victim.name)
    for index in (setup.root / "index").iterdir():
        index.unlink()
    record = PackRecord(pack_id, contents.salt, entries)
    write_index_object(vault.backend, vault.keys, vault.vault_id, encode_index([record]))
    structural = check_vault(setup.vault())
    assert errors_naming(structural, victim.name)
    full = check_vault(setup.vault(), read_data=True)
    assert any("not in the pack header" in e for e in errors_naming(full, victim.name))
    result, after = repaired(setup)
    assert result.entries_dropped == 1
    assert after.ok, after.problems
    assert_restores(setup, *setup.points)


def test_zero_length_objects(setup: Setup) -> None:
    pack = setup.pack_of(setup.points[2])
    pack.write_bytes(b"")
    index = next((setup.root / "index").iterdir())
    index.write_bytes(b"")
    point = setup.root / "points" / setup.points[0].point.point_id
    point.write_bytes(b"")
    before = check_vault(setup.vault())
    for name in (pack.name, index.name, point.name):
        assert errors_naming(before, name), name
    result, after = repaired(setup)
    assert any(pack.name in n for n in result.packs_removed)
    assert any(point.name in n for n in result.objects_removed)
    assert set(result.damaged_points) == {setup.points[2].point.point_id}
    assert_restores(setup, setup.points[1])
    assert set(after.affected_points) == {setup.points[2].point.point_id}


def test_truncated_header_is_salvaged_completely(setup: Setup) -> None:
    pack = setup.pack_of(setup.points[0])
    pack.write_bytes(pack.read_bytes()[:-20])
    before = check_vault(setup.vault())
    assert any("header" in e for e in errors_naming(before, pack.name))
    result, after = repaired(setup)
    assert result.chunks_lost == 0 and result.chunks_salvaged > 0
    assert after.ok and not after.problems, after.problems
    assert_restores(setup, *setup.points)


def test_damaged_blob_loses_only_that_chunk(setup: Setup) -> None:
    pack = setup.pack_of(setup.points[1])
    data = bytearray(pack.read_bytes())
    data[200] ^= 0x10  # inside the first blob
    pack.write_bytes(data)
    result, after = repaired(setup)
    assert result.chunks_lost == 1 and result.chunks_salvaged > 0
    assert set(result.damaged_points) == {setup.points[1].point.point_id}
    assert_restores(setup, setup.points[0], setup.points[2])
    lost = set(after.affected_points[setup.points[1].point.point_id])
    assert len(lost) == 1


def test_repair_of_a_healthy_vault_changes_nothing_that_matters(setup: Setup) -> None:
    packs = {p.name for p in setup.packs()}
    result, after = repaired(setup)
    assert result.packs_indexed == len(packs) and not result.packs_removed
    assert {p.name for p in setup.packs()} == packs
    assert after.ok and not after.problems
