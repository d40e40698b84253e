"""Key files: a random secret that opens its own slot, derived at Argon2id's minimum cost."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.errors import KeySlotError, WrongPassphrase
from strongroom.storage import LocalBackend
from strongroom.vault import KDFParams, Vault, check_vault
from strongroom.vault.keyfile import new_key_text, slot_of
from strongroom.vault.keys import KEY_FILE_KDF, SlotOpener
from tests.conftest import FAST_KDF, PASSPHRASE


def key_text(slot_id: str) -> str:
    secret = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    return f"strongroom-key 1 {slot_id} {secret}"


def test_a_key_file_opens_its_own_slot_first_at_the_minimum_cost(
    tmp_path: Path, derivations: list[KDFParams]
) -> None:
    vault = Vault.init(LocalBackend(tmp_path / "v"), PASSPHRASE, kdf=FAST_KDF)
    text = key_text("ffffffffffffffff")  # sorts after the passphrase slot
    assert vault.add_key_file(text) == "ffffffffffffffff"
    derivations.clear()
    opener = SlotOpener(LocalBackend(tmp_path / "v"), text)
    opener.prepare()
    opened = Vault.open(opener.backend, opener)
    assert opened.slot_id == "ffffffffffffffff"
    assert derivations == [KEY_FILE_KDF] and opener.derived == 1
    slots = {s.slot_id: s for s in opened.list_keys()}
    assert slots["ffffffffffffffff"].key_file and slots["ffffffffffffffff"].label == "key file"
    assert not slots[vault.slot_id].key_file
    # the passphrase still opens its own slot, and check finds both slots sound
    assert Vault.open(LocalBackend(tmp_path / "v"), PASSPHRASE).slot_id == vault.slot_id
    report = check_vault(opened)
    assert report.ok and not [p for p in report.problems if p.name.startswith("keys")]


def test_a_wrong_secret_for_the_slot_does_not_open(tmp_path: Path) -> None:
    vault = Vault.init(LocalBackend(tmp_path / "v"), PASSPHRASE, kdf=FAST_KDF)
    slot_id, text = new_key_text()
    vault.add_key_file(text)
    forged = key_text(slot_id)
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        Vault.open(LocalBackend(tmp_path / "v"), forged)


def test_a_removed_or_foreign_key_file_says_its_slot_is_not_there(tmp_path: Path) -> None:
    vault = Vault.init(LocalBackend(tmp_path / "v"), PASSPHRASE, kdf=FAST_KDF)
    slot_id, text = new_key_text()
    vault.add_key_file(text)
    Vault.open(LocalBackend(tmp_path / "v"), PASSPHRASE).remove_key(slot_id)
    with pytest.raises(WrongPassphrase, match=f"slot {slot_id} is not in this vault"):
        Vault.open(LocalBackend(tmp_path / "v"), text)
    other = Vault.init(LocalBackend(tmp_path / "w"), PASSPHRASE, kdf=FAST_KDF)
    _, foreign = new_key_text()
    other.add_key_file(foreign)
    with pytest.raises(WrongPassphrase, match="another vault's key file"):
        Vault.open(LocalBackend(tmp_path / "v"), foreign)


def test_add_key_file_refuses_other_text_and_a_taken_slot_id(tmp_path: Path) -> None:
    vault = Vault.init(LocalBackend(tmp_path / "v"), PASSPHRASE, kdf=FAST_KDF)
    before = sorted(p.name for p in (tmp_path / "v" / "keys").iterdir())
    with pytest.raises(KeySlotError, match="not a key file line"):
        vault.add_key_file("a passphrase")
    with pytest.raises(KeySlotError, match="already has a key slot"):
        vault.add_key_file(key_text(vault.slot_id))
    assert sorted(p.name for p in (tmp_path / "v" / "keys").iterdir()) == before


def test_new_key_text_names_its_slot_and_is_never_the_same() -> None:
    made = [new_key_text() for _ in range(50)]
    assert all(slot_of(text) == slot_id for slot_id, text in made)
    assert len({text for _, text in made}) == 50
    assert all(len(text) == len("strongroom-key 1 ") + 16 + 1 + 43 for _, text in made)


@given(st.text())
def test_slot_of_reads_any_text_without_failing(text: str) -> None:
    found = slot_of(text)
    assert found is None or (len(found) == 16 and text.startswith(f"strongroom-key 1 {found} "))


@given(st.sampled_from([" ", "\n", "x", "="]), st.integers(min_value=0, max_value=60))
def test_a_damaged_key_line_is_a_plain_passphrase(extra: str, where: int) -> None:
    _, text = new_key_text()
    damaged = text[:where] + extra + text[where:]
    assert slot_of(damaged) is None
    assert slot_of(text[:where] + text[where + 1 :]) is None


def test_passwd_refuses_to_turn_a_key_file_slot_into_a_passphrase(tmp_path: Path) -> None:
    vault = Vault.init(LocalBackend(tmp_path / "v"), PASSPHRASE, kdf=FAST_KDF)
    slot_id, text = new_key_text()
    vault.add_key_file(text)
    opened = Vault.open(LocalBackend(tmp_path / "v"), text)
    with pytest.raises(KeySlotError, match=f"key remove {slot_id}"):
        opened.change_passphrase("a new one", FAST_KDF)
    assert {s.slot_id for s in opened.list_keys()} == {vault.slot_id, slot_id}
    assert Vault.open(LocalBackend(tmp_path / "v"), text).slot_id == slot_id
