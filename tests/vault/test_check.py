"""check finds every damaged chunk and names the recovery points that need it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from strongroom.storage import LocalBackend
from strongroom.vault import Vault, check_vault
from tests.conftest import PASSPHRASE
from tests.vault.helpers import random_chunks, write_point


def corrupt_chunk(vault: Vault, root: Path, cid: bytes) -> None:
    entry = vault.index.lookup(cid)
    assert entry is not None
    path = root / "data" / entry.pack.hex()[:2] / entry.pack.hex()
    data = bytearray(path.read_bytes())
    data[entry.offset + entry.length // 2] ^= 0x40
    path.write_bytes(data)


def test_read_data_finds_each_corrupted_chunk(
    tmp_path: Path, make_vault: Callable[..., Vault]
) -> None:
    root = tmp_path / "v"
    vault = make_vault(LocalBackend(root), pack_size=200_000)
    shared = random_chunks(10, 4)
    a = write_point(vault, shared + random_chunks(11, 6), source="a")
    b = write_point(vault, shared + random_chunks(12, 6), source="b")
    c = write_point(vault, random_chunks(13, 6), source="c")
    only_a = next(cid for cid in a.chunks if cid not in b.chunks)
    in_both = next(cid for cid in a.chunks if cid in b.chunks)
    for cid in (only_a, in_both):
        corrupt_chunk(vault, root, cid)
    assert check_vault(Vault.open(LocalBackend(root), PASSPHRASE)).ok  # structure alone is fine
    report = check_vault(Vault.open(LocalBackend(root), PASSPHRASE), read_data=True)
    assert report.damaged_chunks == {only_a, in_both}
    assert set(report.affected_points) == {a.point.point_id, b.point.point_id}
    assert c.point.point_id not in report.affected_points
    assert all("data/" in p.name for p in report.errors)


def test_subset_reads_part_of_the_packs(tmp_path: Path, make_vault: Callable[..., Vault]) -> None:
    vault = make_vault(LocalBackend(tmp_path / "v"), pack_size=100_000)
    write_point(vault, random_chunks(20, 30))
    full = check_vault(vault, read_data=True)
    part = check_vault(vault, subset=0.25)
    assert full.ok and part.ok
    assert 0 < part.packs_checked < full.packs_checked


def test_missing_pack_and_unindexed_pack(tmp_path: Path, make_vault: Callable[..., Vault]) -> None:
    root = tmp_path / "v"
    vault = make_vault(LocalBackend(root), pack_size=100_000)
    written = write_point(vault, random_chunks(30, 12))
    packs = sorted((root / "data").rglob("*"))
    packs = [p for p in packs if p.is_file()]
    victim = packs[0]
    victim.unlink()
    (root / "data" / "ff").mkdir(exist_ok=True)
    stray = root / "data" / "ff" / ("ff" + "0" * 62)
    stray.write_bytes(b"junk")
    report = check_vault(Vault.open(LocalBackend(root), PASSPHRASE))
    assert any(victim.name in p.name and "missing" in p.message for p in report.errors)
    assert any(stray.name in p.name for p in report.problems if p.severity == "warning")
    assert written.point.point_id in report.affected_points
