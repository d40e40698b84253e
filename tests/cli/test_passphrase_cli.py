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
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRONGROOM_PASSWORD", PW)
    loc = tmp_path / "v"
    assert run(capsys, *init_args(loc))[0] == 0
    empty = tmp_path / "empty"
    empty.write_text("")
    before = sorted(p.name for p in (loc / "keys").iterdir())
    code, text = run(capsys, "key", "add", "--vault", str(loc), "--new-password-file", str(empty))
    assert code == 1 and "is empty" in text
    assert sorted(p.name for p in (loc / "keys").iterdir()) == before


def test_opening_with_an_empty_password_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRONGROOM_PASSWORD", PW)
    loc = tmp_path / "v"
    assert run(capsys, *init_args(loc))[0] == 0
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
