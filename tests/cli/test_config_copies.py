"""config and every key slot are stored twice: one damaged or missing copy never locks the owner
out (every command works, with a warning), check names it, check --repair restores it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from strongroom.cli.main import main

PW = "cli passphrase"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STRONGROOM_VAULT", str(tmp_path / "vault"))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PW)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("STRONGROOM_LOCK_WAIT", raising=False)
    assert main(["init", "--kdf-memory", "1", "--kdf-time", "1"]) == 0
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha")
    (src / "b.bin").write_bytes(os.urandom(20_000))
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def slot_file(env: Path) -> Path:
    (path,) = (env / "vault" / "keys").iterdir()
    return path


def flip(path: Path, needle: bytes, offset: int = 0) -> None:
    data = bytearray(path.read_bytes())
    pos = data.index(needle) + offset
    data[pos] ^= 0x01
    path.write_bytes(bytes(data))


def every_command_works(capsys: pytest.CaptureFixture[str], env: Path, warning: str) -> None:
    code, out, err = run(capsys, "backup", "files", str(env / "src"), "--source", "s")
    assert code == 0 and warning in err, err
    point = out.strip().splitlines()[-1]
    code, out, err = run(capsys, "points", "--json")
    assert code == 0 and warning in err and [p["id"] for p in json.loads(out)] == [point]
    code, _, err = run(capsys, "restore", "files", point, "--target", str(env / "out"))
    assert code == 0 and warning in err
    restored = env / "out" / os.path.relpath(env / "src", "/")
    assert (restored / "a.txt").read_text() == "alpha"
    code, out, err = run(capsys, "key", "list", "--json")
    assert code == 0 and len(json.loads(out)) == 1
    code, _, err = run(capsys, "forget", "--keep-last", "1")
    assert code == 0 and warning in err
    code, _, err = run(capsys, "prune", "--grace-hours", "0")
    assert code == 0 and warning in err


def repaired(capsys: pytest.CaptureFixture[str], env: Path, damaged: str) -> None:
    code, out, err = run(capsys, "check")
    assert code == 1 and damaged in out + err, out + err
    code, out, err = run(capsys, "check", "--repair")
    assert code == 0 and f"restored {damaged}" in out, out + err
    code, out, err = run(capsys, "check", "--read-data")
    assert code == 0 and not err and "no errors" in out


@pytest.mark.parametrize(
    ("needle", "offset"),
    [(b"{", 0), (b'"id": "', 9), (b'"mac": "', 20), (b'"soft_delete_days": 1', 20)],
    ids=["json", "vault-id", "mac", "settings"],
)
def test_one_damaged_byte_of_config(
    env: Path, capsys: pytest.CaptureFixture[str], needle: bytes, offset: int
) -> None:
    flip(env / "vault" / "config", needle, offset)
    every_command_works(capsys, env, "config is missing or damaged: using config-copy")
    repaired(capsys, env, "config")
    assert (env / "vault" / "config").read_bytes() == (env / "vault" / "config-copy").read_bytes()


def test_a_settings_change_survives_a_damaged_primary(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "settings", "--immutable-days", "3")[0] == 0
    assert b'"immutable_days": 3' in (env / "vault" / "config-copy").read_bytes()
    flip(env / "vault" / "config", b'"mac": "', 10)
    code, out, err = run(capsys, "settings", "--json")
    assert code == 0 and json.loads(out)["immutable_days"] == 3 and "config-copy" in err


def test_missing_config(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (env / "vault" / "config").unlink()
    every_command_works(capsys, env, "config is missing or damaged: using config-copy")
    code, out, err = run(capsys, "check")
    assert code == 1 and "config: missing" in out + err
    code, out, _ = run(capsys, "check", "--repair")
    assert code == 0 and "wrote the missing config" in out
    assert run(capsys, "check")[0] == 0


@pytest.mark.parametrize("needle", [b'"wrapped": "', b'"salt": "', b"{"], ids=str)
def test_one_damaged_byte_of_a_key_slot(
    env: Path, capsys: pytest.CaptureFixture[str], needle: bytes
) -> None:
    slot = slot_file(env)
    flip(slot, needle, len(needle) + 3 if needle != b"{" else 0)
    every_command_works(capsys, env, f"keys/{slot.name} is missing or damaged")
    repaired(capsys, env, f"keys/{slot.name}")
    assert slot.read_bytes() == (env / "vault" / "keys-copy" / slot.name).read_bytes()


def test_missing_key_slot(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slot = slot_file(env)
    slot.unlink()
    every_command_works(capsys, env, f"keys/{slot.name} is missing or damaged")
    code, out, _ = run(capsys, "check", "--repair")
    assert code == 0 and f"wrote the missing keys/{slot.name}" in out
    assert slot.exists()


def test_vault_made_before_copies(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No copies at all: opens without a word, check warns, check --repair writes them."""
    vault = env / "vault"
    slot = slot_file(env)
    (vault / "config-copy").unlink()
    (vault / "keys-copy" / slot.name).unlink()
    code, _, err = run(capsys, "points")
    assert code == 0 and not err
    code, out, err = run(capsys, "check")
    assert code == 0 and "config-copy: missing" in err and f"keys-copy/{slot.name}" in err
    code, out, _ = run(capsys, "check", "--repair")
    assert code == 0 and "wrote the missing config-copy" in out
    assert (vault / "config-copy").read_bytes() == (vault / "config").read_bytes()
    assert (vault / "keys-copy" / slot.name).read_bytes() == slot.read_bytes()
    code, out, err = run(capsys, "check")
    assert code == 0 and not err


def test_key_commands_keep_both_copies(
    env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    vault = env / "vault"
    first = slot_file(env).name
    (tmp_path / "new").write_text("second passphrase")
    assert run(capsys, "key", "add", "--new-password-file", str(tmp_path / "new"))[0] == 0
    primaries = sorted(p.name for p in (vault / "keys").iterdir())
    assert primaries == sorted(p.name for p in (vault / "keys-copy").iterdir())
    assert len(primaries) == 2
    code, out, _ = run(capsys, "key", "list", "--json")
    assert code == 0 and len(json.loads(out)) == 2, "a slot and its copy are one slot"
    (second,) = set(primaries) - {first}
    assert run(capsys, "key", "remove", second)[0] == 0
    assert [p.name for p in (vault / "keys-copy").iterdir()] == [first]
    assert run(capsys, "key", "passwd", "--new-password-file", str(tmp_path / "new"))[0] == 0
    (third,) = [p.name for p in (vault / "keys").iterdir()]
    assert [p.name for p in (vault / "keys-copy").iterdir()] == [third] and third != first
    os.environ["STRONGROOM_PASSWORD"] = "second passphrase"
    assert run(capsys, "points")[0] == 0


def test_foreign_config_is_named(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vault, other = env / "vault", env / "other"
    assert main(["init", "--vault", str(other), "--kdf-memory", "1", "--kdf-time", "1"]) == 0
    own = (vault / "config-copy").read_bytes()
    for name in ("config", "config-copy"):
        (vault / name).write_bytes((other / name).read_bytes())
    code, _, err = run(capsys, "points")
    assert code == 1 and "config of another vault" in err and "wrong passphrase" not in err
    # only the primary swapped: the copy is this vault's own, so everything works
    (vault / "config-copy").write_bytes(own)
    code, _, err = run(capsys, "points")
    assert code == 0 and "config is missing or damaged: using config-copy" in err
    assert run(capsys, "check", "--repair")[0] == 0
    assert (vault / "config").read_bytes() == own
