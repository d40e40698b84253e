"""Flip any single byte of any stored object: opening, reading or check must notice."""

from __future__ import annotations

import random
from pathlib import Path

from strongroom.errors import StrongroomError
from strongroom.storage import LocalBackend
from strongroom.vault import KDFParams, Vault, VaultSettings, check_vault
from tests.vault.helpers import write_point

PASS = "tamper"
KDF = KDFParams(time_cost=1, memory_kib=8, parallelism=1)


def build(root: Path) -> list[Path]:
    vault = Vault.init(LocalBackend(root), PASS, kdf=KDF, settings=VaultSettings(pack_size=4096))
    write_point(vault, [b"one" * 50, random.Random(1).randbytes(300), b"three" * 20])
    return sorted(p for p in root.rglob("*") if p.is_file())


def detected(root: Path) -> bool:
    try:
        vault = Vault.open(LocalBackend(root), PASS)
        report = check_vault(vault, read_data=True)
    except StrongroomError:
        return True
    return not report.ok


def positions(size: int, rng: random.Random) -> list[int]:
    """Every byte of the first and last 64, and a sample in between."""
    edge = set(range(min(size, 64))) | set(range(max(0, size - 64), size))
    middle = [rng.randrange(size) for _ in range(24)] if size > 128 else []
    return sorted(edge | set(middle))


def test_every_flipped_byte_is_detected(tmp_path: Path) -> None:
    rng = random.Random(7)
    root = tmp_path / "v"
    files = build(root)
    kinds = {f.relative_to(root).parts[0] for f in files}
    assert kinds == {"config", "config-copy", "keys", "keys-copy", "data", "index", "points"}
    missed = []
    for path in files:
        original = path.read_bytes()
        for pos in positions(len(original), rng):
            damaged = bytearray(original)
            damaged[pos] ^= rng.randrange(1, 256)
            path.write_bytes(damaged)
            if not detected(root):
                missed.append(f"{path.relative_to(root)}@{pos}")
        path.write_bytes(original)
    assert not missed, missed
    assert not detected(root)


def test_truncated_and_missing_objects_are_named(tmp_path: Path) -> None:
    root = tmp_path / "v"
    files = build(root)
    for path in files:
        original = path.read_bytes()
        for cut in (0, len(original) // 2, len(original) - 1):
            path.write_bytes(original[:cut])
            assert detected(root), f"{path} truncated to {cut}"
        path.unlink()
        # A missing recovery point looks exactly like a forgotten one; a missing copy of
        # config or a key slot like a vault made before copies (a warning); everything else
        # must be noticed.
        copy = path.name == "config-copy" or path.parent.name == "keys-copy"
        if copy:
            report = check_vault(Vault.open(LocalBackend(root), PASS))
            assert report.ok and any(p.name.endswith(path.name) for p in report.problems)
        elif path.parent.name != "points":
            assert detected(root), f"{path} missing"
        path.write_bytes(original)


def test_error_names_the_damaged_object(tmp_path: Path) -> None:
    root = tmp_path / "v"
    files = build(root)
    index = next(f for f in files if f.parent.name == "index")
    data = bytearray(index.read_bytes())
    data[40] ^= 1
    index.write_bytes(data)
    try:
        Vault.open(LocalBackend(root), PASS)
    except StrongroomError as exc:
        assert index.name in str(exc)
    else:
        raise AssertionError("corrupted index was not noticed")
    vault = Vault.open(LocalBackend(root), PASS, strict=False)
    report = check_vault(vault)
    assert any(index.name in p.name for p in report.errors)
