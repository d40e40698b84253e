"""The vault commands end to end: exit codes, one-line errors, --json, remote vaults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.cli.main import main
from strongroom.storage import open_backend
from strongroom.vault import Vault
from tests.emulators import Emulator
from tests.vault.helpers import random_chunks, write_point

PW = "cli passphrase"


@pytest.fixture(autouse=True)
def passphrase(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("STRONGROOM_PASSWORD", PW)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("STRONGROOM_VAULT", raising=False)
    yield


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def init(capsys: pytest.CaptureFixture[str], location: str) -> None:
    code, _, err = run(capsys, "init", "--vault", location, "--kdf-memory", "1", "--kdf-time", "1")
    assert code == 0, err


def test_init_points_stats_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loc = str(tmp_path / "v")
    init(capsys, loc)
    vault = Vault.open(open_backend(loc), PW)
    written = write_point(vault, random_chunks(1, 6), source="web1")
    code, out, _ = run(capsys, "points", "--vault", loc, "--json")
    assert code == 0
    assert [p["id"] for p in json.loads(out)] == [written.point.point_id]
    code, out, _ = run(capsys, "points", "--vault", loc)
    assert written.point.short_id in out and "web1" in out
    code, out, _ = run(capsys, "stats", "--vault", loc, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["points"] == 1 and doc["chunks"] == 7 and doc["packs"] >= 1
    code, out, _ = run(capsys, "check", "--vault", loc, "--read-data", "--json")
    assert code == 0 and json.loads(out)["ok"] and json.loads(out)["chunks_read"] == 7


def test_check_reports_damage_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loc = tmp_path / "v"
    init(capsys, str(loc))
    written = write_point(Vault.open(open_backend(str(loc)), PW), random_chunks(2, 4))
    pack = next(p for p in (loc / "data").rglob("*") if p.is_file())
    data = bytearray(pack.read_bytes())
    data[100] ^= 1
    pack.write_bytes(data)
    code, out, _ = run(capsys, "check", "--vault", str(loc), "--read-data")
    assert code == 1
    assert pack.name in out and written.point.short_id in out


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("none", ["points"], "no vault given"),
        ("empty", ["points"], "is not a strongroom vault"),
        ("vault", ["init"], "already holds a vault"),
        ("vault", ["points", "--password-file", "/nonexistent/pw"], "cannot read password file"),
        ("vault", ["check", "--read-data-subset", "250%"], "between 0% and 100%"),
        ("vault", ["key", "remove", "deadbeef"], "no key slot"),
        ("url", ["points"], "unsupported vault location"),
    ],
)
def test_bad_input_gives_one_line_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    setup: str,
    args: list[str],
    message: str,
) -> None:
    loc = tmp_path / "v"
    if setup == "vault":
        init(capsys, str(loc))
    elif setup == "empty":
        loc.mkdir()
    if "--password-file" in args:
        monkeypatch.setenv("STRONGROOM_PASSWORD", "wrong")
    vault_args = [] if setup == "none" else ["--vault", "ftp://x/y" if setup == "url" else str(loc)]
    before = sorted(p.name for p in loc.rglob("*")) if loc.exists() else []
    code, out, err = run(capsys, *args, *vault_args)
    assert code in (1, 2)
    assert message in (out + err)
    assert "Traceback" not in out + err
    after = sorted(p.name for p in loc.rglob("*")) if loc.exists() else []
    assert before == after


def test_key_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loc = str(tmp_path / "v")
    init(capsys, loc)
    new = tmp_path / "new-pw"
    new.write_text("second passphrase\n")
    code, out, _ = run(capsys, "key", "add", "--vault", loc, "--new-password-file", str(new))
    assert code == 0
    code, out, _ = run(capsys, "key", "list", "--vault", loc, "--json")
    slots = json.loads(out)
    assert len(slots) == 2 and sum(s["current"] for s in slots) == 1
    code, _, _ = run(capsys, "key", "passwd", "--vault", loc, "--new-password-file", str(new))
    assert code == 0
    code, _, err = run(capsys, "points", "--vault", loc)
    assert code == 1 and "wrong passphrase" in err
    code, _, err = run(capsys, "points", "--vault", loc, "--password-file", str(new))
    assert code == 0, err  # the command line wins over STRONGROOM_PASSWORD


def test_remote_vault_on_azurite(
    azurite: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in azurite.env.items():
        monkeypatch.setenv(key, value)
    loc = f"azure://{azurite.bucket}/cli-{tmp_path.name}"
    init(capsys, loc)
    written = write_point(Vault.open(open_backend(loc), PW), random_chunks(3, 5), source="az")
    code, out, _ = run(capsys, "points", "--vault", loc, "--json")
    assert code == 0 and json.loads(out)[0]["id"] == written.point.point_id
    code, out, _ = run(capsys, "check", "--vault", loc, "--read-data", "--json")
    assert code == 0 and json.loads(out)["ok"]
    cached = list((tmp_path / "cache").rglob("*"))
    assert any(written.point.point_id in p.name for p in cached), "points are cached locally"


def test_remote_vault_on_s3(
    moto: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in moto.env.items():
        monkeypatch.setenv(key, value)
    loc = f"s3://{moto.bucket}/cli-{tmp_path.name}"
    init(capsys, loc)
    write_point(Vault.open(open_backend(loc), PW), random_chunks(4, 3))
    code, out, _ = run(capsys, "check", "--vault", loc, "--read-data", "--json")
    assert code == 0 and json.loads(out)["chunks_read"] == 4


def test_unreachable_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", "devstoreaccount1")
    monkeypatch.setenv("AZURE_STORAGE_KEY", "Zm9v")
    monkeypatch.setenv("AZURE_STORAGE_ENDPOINT", "http://127.0.0.1:9/devstoreaccount1")
    code, _, err = run(capsys, "points", "--vault", "azure://c/p")
    assert code == 1 and "Traceback" not in err and err.strip()


@pytest.mark.parametrize(
    ("option", "value"),
    [("--kdf-memory", "100000"), ("--kdf-memory", "0"), ("--kdf-time", "1000")],
)
def test_init_with_an_absurd_kdf_cost_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    """--kdf-memory 100000 (MiB) was a traceback from Argon2's allocation."""
    loc = tmp_path / "v"
    code, _, err = run(capsys, "init", "--vault", str(loc), option, value)
    assert code == 2 and option in err and "Traceback" not in err
    assert not loc.exists()
