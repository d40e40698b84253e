"""Passphrases the CLI refuses (empty, unreadable, not text), and `version --json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strongroom.cli.main import main
from strongroom.errors import KeySlotError
from strongroom.storage import LocalBackend
from strongroom.vault import Vault
from tests.conftest import FAST_KDF

PW = "cli passphrase"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out + err


def init_args(loc: Path) -> list[str]:
    return ["init", "--vault", str(loc), "--kdf-memory", "1", "--kdf-time", "1"]


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STRONGROOM_PASSWORD", raising=False)
    monkeypatch.delenv("STRONGROOM_PASSWORD_FILE", raising=False)
    monkeypatch.delenv("STRONGROOM_VAULT", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def initialized(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A new vault at tmp_path/v, its passphrase PW in STRONGROOM_PASSWORD."""
    monkeypatch.setenv("STRONGROOM_PASSWORD", PW)
    loc = tmp_path / "v"
    assert run(capsys, *init_args(loc))[0] == 0
    return loc


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"\n", "is empty"), (b"\xff\xfe\x00pw", "not UTF-8")],
)
def test_init_refuses_an_empty_or_binary_password_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    pw = tmp_path / "pw"
    pw.write_bytes(content)
    loc = tmp_path / "v"
    code, text = run(capsys, *init_args(loc), "--password-file", str(pw))
    assert code == 1 and message in text and str(pw) in text
    assert not (loc / "config").exists()


def test_init_refuses_an_empty_environment_passphrase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRONGROOM_PASSWORD", "")
    loc = tmp_path / "v"
    code, text = run(capsys, *init_args(loc))
    assert code == 1 and "STRONGROOM_PASSWORD is set but empty" in text
    assert not (loc / "config").exists()


def test_key_add_refuses_an_empty_new_password_file(
    tmp_path: Path,
    initialized: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    loc = initialized
    empty = tmp_path / "empty"
    empty.write_text("")
    before = sorted(p.name for p in (loc / "keys").iterdir())
    code, text = run(capsys, "key", "add", "--vault", str(loc), "--new-password-file", str(empty))
    assert code == 1 and "is empty" in text
    assert sorted(p.name for p in (loc / "keys").iterdir()) == before


def test_opening_with_an_empty_password_file_is_refused(
    tmp_path: Path,
    initialized: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loc = initialized
    monkeypatch.delenv("STRONGROOM_PASSWORD")
    empty = tmp_path / "empty"
    empty.write_text("")
    code, text = run(capsys, "points", "--vault", str(loc), "--password-file", str(empty))
    assert code == 1 and "is empty" in text


def test_the_library_refuses_an_empty_passphrase(tmp_path: Path) -> None:
    with pytest.raises(KeySlotError, match="non-empty passphrase"):
        Vault.init(LocalBackend(tmp_path / "v"), "", kdf=FAST_KDF)
    vault = Vault.init(LocalBackend(tmp_path / "w"), PW, kdf=FAST_KDF)
    with pytest.raises(KeySlotError, match="non-empty passphrase"):
        vault.add_key("")


def test_version_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run(capsys, "version", "--json")
    assert code == 0
    doc = json.loads(text)
    assert doc["version"] and doc["python"].count(".") == 2
    code, text = run(capsys, "version")
    assert code == 0 and text.startswith("strongroom ")


def test_key_add_new_key_file_makes_a_private_file_that_opens_the_vault(
    tmp_path: Path,
    initialized: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loc = initialized
    key = tmp_path / "host.key"
    code, text = run(capsys, "key", "add", "--vault", str(loc), "--new-key-file", str(key))
    assert code == 0 and f"--password-file {key}" in " ".join(text.split())
    assert key.stat().st_mode & 0o777 == 0o600
    line = key.read_text()
    assert line.startswith("strongroom-key 1 ") and line.endswith("\n")
    monkeypatch.delenv("STRONGROOM_PASSWORD")
    code, text = run(capsys, "key", "list", "--vault", str(loc), "--password-file", str(key))
    assert code == 0
    code, text = run(
        capsys, "key", "list", "--vault", str(loc), "--password-file", str(key), "--json"
    )
    rows = {row["kind"]: row for row in json.loads(text)}
    assert rows["key file"]["current"] and rows["key file"]["label"] == "key file host.key"
    assert not rows["passphrase"]["current"]
    # for scripts that provision hosts: the new slot and the file, then the slot removed
    other = tmp_path / "other.key"
    code, text = run(
        capsys, "key", "add", "--vault", str(loc), "--password-file", str(key),
        "--new-key-file", str(other), "--json",
    )  # fmt: skip
    made = json.loads(text)
    assert code == 0 and made == {"slot": made["slot"], "key_file": str(other)}
    code, text = run(
        capsys, "key", "remove", made["slot"], "--vault", str(loc), "--password-file", str(key),
        "--json",
    )  # fmt: skip
    assert code == 0 and json.loads(text) == {"slot": made["slot"]}


def test_key_add_never_overwrites_a_file_and_takes_one_kind_of_secret(
    tmp_path: Path,
    initialized: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    loc = initialized
    before = sorted(p.name for p in (loc / "keys").iterdir())
    taken = tmp_path / "taken"
    taken.write_text("precious\n")
    code, text = run(capsys, "key", "add", "--vault", str(loc), "--new-key-file", str(taken))
    assert code == 1 and "File exists" in text and len(text.strip().splitlines()) == 1
    assert taken.read_text() == "precious\n"
    pw = tmp_path / "pw"
    pw.write_text("new one\n")
    both = ["--new-key-file", str(tmp_path / "k"), "--new-password-file", str(pw)]
    code, text = run(capsys, "key", "add", "--vault", str(loc), *both)
    assert code == 1 and "not both" in text and not (tmp_path / "k").exists()
    code, text = run(
        capsys, "key", "add", "--vault", str(loc), "--new-key-file", str(tmp_path / "no" / "k")
    )
    assert code == 1 and "cannot create key file" in text
    assert sorted(p.name for p in (loc / "keys").iterdir()) == before


def test_a_failed_slot_write_removes_the_new_key_file(
    tmp_path: Path,
    initialized: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loc = initialized
    real = Vault.add_key_file

    def refused(self: Vault, text: str, label: str = "key file") -> str:
        raise KeySlotError("the vault refused the slot")  # as a full or read-only vault would

    monkeypatch.setattr(Vault, "add_key_file", refused)
    key = tmp_path / "k"
    code, text = run(capsys, "key", "add", "--vault", str(loc), "--new-key-file", str(key))
    assert code == 1 and "refused the slot" in text and not key.exists()
    monkeypatch.setattr(Vault, "add_key_file", real)


def test_a_key_file_readable_by_others_is_warned_about(
    tmp_path: Path,
    initialized: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loc = initialized
    key = tmp_path / "host.key"
    assert run(capsys, "key", "add", "--vault", str(loc), "--new-key-file", str(key))[0] == 0
    monkeypatch.delenv("STRONGROOM_PASSWORD")
    code, text = run(capsys, "points", "--vault", str(loc), "--password-file", str(key))
    assert code == 0 and "can be read by other users" not in text
    key.chmod(0o644)
    code, text = run(capsys, "points", "--vault", str(loc), "--password-file", str(key))
    flat = " ".join(text.split())
    assert code == 0 and "can be read by other users (mode 644): chmod 600" in flat
    pw = tmp_path / "pw"  # a passphrase file is the owner's business, as before
    pw.write_text(PW + "\n")
    pw.chmod(0o644)
    code, text = run(capsys, "points", "--vault", str(loc), "--password-file", str(pw))
    assert code == 0 and "can be read by other users" not in text
