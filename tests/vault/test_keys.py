"""Key derivation defaults, stored slot parameters, and the vault package's lazy exports."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import strongroom.vault
from strongroom.errors import KeySlotError, NotAVault, WrongPassphrase
from strongroom.storage import LocalBackend
from strongroom.vault import KDFParams, Vault, check_vault
from strongroom.vault.keys import SlotOpener
from tests.conftest import FAST_KDF, PASSPHRASE

FORMAT_MD = Path(__file__).resolve().parents[2] / "docs" / "format.md"


def test_default_kdf_is_what_the_format_document_says() -> None:
    text = FORMAT_MD.read_text(encoding="utf-8")
    (stated,) = re.findall(r"defaults t=(\d+), m=(\d+) MiB, p=(\d+)", text)
    (example,) = re.findall(r'"time_cost": (\d+), "memory_kib": (\d+), "parallelism": (\d+)', text)
    kdf = KDFParams()
    assert (kdf.time_cost, kdf.memory_kib // 1024, kdf.parallelism) == tuple(map(int, stated))
    assert (kdf.time_cost, kdf.memory_kib, kdf.parallelism) == tuple(map(int, example))
    assert (kdf.time_cost, kdf.memory_kib) == (4, 32 * 1024)


def test_a_slot_keeps_the_parameters_it_was_made_with(tmp_path: Path) -> None:
    vault = Vault.init(LocalBackend(tmp_path / "v"), PASSPHRASE, kdf=FAST_KDF)
    other = KDFParams(time_cost=2, memory_kib=2048, parallelism=1)
    second = vault.add_key("second", other)
    slots = {s.slot_id: s.kdf for s in vault.list_keys()}
    assert slots == {vault.slot_id: FAST_KDF, second: other}
    assert Vault.open(LocalBackend(tmp_path / "v"), "second").slot_id == second
    assert Vault.open(LocalBackend(tmp_path / "v"), PASSPHRASE).slot_id == vault.slot_id


def test_a_prepared_opener_derives_each_slot_key_once(
    tmp_path: Path, derivations: list[KDFParams]
) -> None:
    vault = Vault.init(LocalBackend(tmp_path / "v"), PASSPHRASE, kdf=FAST_KDF)
    owners = {vault.slot_id: PASSPHRASE, vault.add_key("second", FAST_KDF): "second"}
    derived = derivations
    for position, slot_id in enumerate(sorted(owners)):
        derived.clear()
        opener = SlotOpener(LocalBackend(tmp_path / "v"), owners[slot_id])
        opener.prepare()
        assert len(derived) == 1
        assert Vault.open(opener.backend, opener).slot_id == slot_id
        assert len(derived) == position + 1
    opener = SlotOpener(LocalBackend(tmp_path / "v"), "wrong")
    opener.prepare()
    with pytest.raises(WrongPassphrase):
        Vault.open(opener.backend, opener)


def test_prepare_leaves_problems_for_open_to_report(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    opener = SlotOpener(LocalBackend(tmp_path / "empty"), PASSPHRASE)
    opener.prepare()
    with pytest.raises(NotAVault):
        Vault.open(opener.backend, opener)


def test_every_exported_name_resolves_to_its_module() -> None:
    homes = strongroom.vault._HOME
    assert sorted(homes) == sorted(strongroom.vault.__all__)
    for name, module in homes.items():
        home = importlib.import_module(f"strongroom.vault.{module}")
        assert getattr(strongroom.vault, name) is getattr(home, name), name


def test_prune_and_repair_stay_functions_after_their_modules_load() -> None:
    importlib.import_module("strongroom.vault.prune")
    importlib.import_module("strongroom.vault.repair")
    from strongroom.vault import prune, repair

    assert isinstance(prune, types.FunctionType) and prune.__name__ == "prune"
    assert isinstance(repair, types.FunctionType) and repair.__name__ == "repair"


def test_open_derives_the_key_before_numpy_is_loaded(tmp_path: Path) -> None:
    """The KDF's memory adds to a small base: the engines load after it, and opening a
    small vault (its index loaded) needs no numpy at all."""
    Vault.init(LocalBackend(tmp_path / "v"), PASSPHRASE, kdf=FAST_KDF)
    script = textwrap.dedent(
        f"""
        import sys
        import strongroom.vault.kdf

        seen = []
        derive = strongroom.vault.kdf.argon2id

        def spy(*args, **kwargs):
            seen.append(sorted(m for m in ("numpy", "pydantic", "rich") if m in sys.modules))
            return derive(*args, **kwargs)

        strongroom.vault.kdf.argon2id = spy
        from strongroom.storage import LocalBackend
        from strongroom.vault import Vault

        Vault.open(LocalBackend({str(tmp_path / "v")!r}), {PASSPHRASE!r})
        print(seen, "numpy" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["[[]]", "False"]


def _rewrite_slot_cost(path: Path, vault_id: bytes, **cost: int) -> None:
    """Change a stored slot's Argon2id cost (in canonical form, with both copies alike)."""
    doc = json.loads(path.read_bytes())
    doc["kdf"].update(cost)
    stored = json.dumps(doc, indent=1, sort_keys=True).encode()
    path.write_bytes(stored)
    (path.parent.parent / "keys-copy" / path.name).write_bytes(stored)


@pytest.mark.parametrize(
    "cost",
    [
        {"memory_kib": 0},
        {"memory_kib": 1 << 40},
        {"time_cost": 10**9},
        {"time_cost": 0},
        {"parallelism": 1 << 20},
        {"memory_kib": 8, "parallelism": 2},
    ],
    ids=str,
)
def test_a_slot_with_an_absurd_cost_is_skipped_not_tried(
    tmp_path: Path, derivations: list[KDFParams], cost: dict[str, int]
) -> None:
    """Unbounded, such a slot is a traceback (0 KiB) or a command that never ends."""
    vault = Vault.init(LocalBackend(tmp_path / "v"), PASSPHRASE, kdf=FAST_KDF)
    second = vault.add_key("second", FAST_KDF)
    _rewrite_slot_cost(tmp_path / "v" / "keys" / vault.slot_id, vault.vault_id, **cost)
    derived = derivations
    derived.clear()
    with pytest.raises(WrongPassphrase, match=rf"skipped keys/{vault.slot_id}: not tried"):
        Vault.open(LocalBackend(tmp_path / "v"), PASSPHRASE)
    assert derived == [FAST_KDF], "the absurd slot was never derived"
    warned: list[str] = []
    opened = Vault.open(LocalBackend(tmp_path / "v"), "second", warn=warned.append)
    assert opened.slot_id == second
    if vault.slot_id < second:  # slots are tried in id order until one opens
        assert any("Argon2id" in w and vault.slot_id in w for w in warned)
    report = check_vault(opened)
    assert any(p.name == f"keys/{vault.slot_id}" and "Argon2id" in p.message for p in report.errors)


@pytest.mark.parametrize(
    "kdf",
    [KDFParams(memory_kib=4), KDFParams(memory_kib=(4 << 20) + 1), KDFParams(time_cost=101)],
    ids=str,
)
def test_init_refuses_an_absurd_cost(tmp_path: Path, kdf: KDFParams) -> None:
    with pytest.raises(KeySlotError, match="Argon2id"):
        Vault.init(LocalBackend(tmp_path / "v"), PASSPHRASE, kdf=kdf)
    assert not (tmp_path / "v").exists() or not any((tmp_path / "v").rglob("*"))
