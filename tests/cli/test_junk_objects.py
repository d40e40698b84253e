"""One junk, foreign or misnamed object under index/ or points/ is skipped with a warning:
backup, restore, points, forget and prune still work; check names it; check --repair removes it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from strongroom.cli.main import main
from strongroom.storage import LocalBackend
from strongroom.storage.names import content_digest
from strongroom.vault import Vault
from strongroom.vault.prune import PruneOptions, prune
from tests.conftest import PASSPHRASE
from tests.vault.helpers import random_chunks, write_point

PW = "cli passphrase"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STRONGROOM_VAULT", str(tmp_path / "vault"))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PW)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("STRONGROOM_LOCK_WAIT", raising=False)
    assert main(["init", "--kdf-memory", "1", "--kdf-time", "1", "--pack-size", "1"]) == 0
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha")
    (src / "b.bin").write_bytes(os.urandom(50_000))
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def other_vault_object(tmp_path: Path, prefix: str) -> tuple[str, bytes]:
    """A genuine object of another vault (under its own, correct name)."""
    other = Vault.init(LocalBackend(tmp_path / "other"), PW)
    write_point(other, random_chunks(1, 2, 4096))
    info = next(iter(other.backend.list(prefix)))
    return info.name.rsplit("/", 1)[-1], other.backend.get(info.name)


def random_hex_name(_: Path, prefix: str) -> tuple[str, bytes]:
    return os.urandom(32).hex(), os.urandom(300)


def text_file(_: Path, prefix: str) -> tuple[str, bytes]:
    return "hello.txt", b"hello\n"


def copy_of_real_index(tmp_path: Path, prefix: str) -> tuple[str, bytes]:
    backend = LocalBackend(tmp_path / "vault")
    info = next(iter(backend.list(prefix)))
    return "0" * 64, backend.get(info.name)


JUNK: dict[str, Callable[[Path, str], tuple[str, bytes]]] = {
    "random-bytes": random_hex_name,
    "hello-txt": text_file,
    "foreign": other_vault_object,
}


def plant(tmp_path: Path, prefix: str, make: Callable[[Path, str], tuple[str, bytes]]) -> str:
    leaf, data = make(tmp_path, prefix)
    name = prefix + leaf
    (tmp_path / "vault" / prefix).mkdir(exist_ok=True)
    (tmp_path / "vault" / name).write_bytes(data)
    return name


def backup(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> tuple[str, str]:
    code, out, err = run(capsys, "backup", "files", str(tmp_path / "src"), "--source", "s")
    assert code == 0, err
    return out.strip().splitlines()[-1], err


def exercise(capsys: pytest.CaptureFixture[str], tmp_path: Path, junk: str) -> None:
    """Every command works around the junk object and warns about it by name."""
    first, _ = backup(capsys, tmp_path)
    second, err = backup(capsys, tmp_path)
    assert junk in err and "warning" in err, err

    code, out, err = run(capsys, "points", "--json")
    assert code == 0
    # listing points reads no index object (issue 19), so only other junk is met there
    assert (junk in err) != junk.startswith("index/"), err
    assert {first, second} <= {p["id"] for p in json.loads(out)}

    target = tmp_path / "out"
    code, _, err = run(capsys, "restore", "files", first, "--target", str(target))
    assert code == 0 and junk in err, err
    restored = target / os.path.relpath(tmp_path / "src", "/")
    assert (restored / "a.txt").read_text() == "alpha"
    assert (restored / "b.bin").read_bytes() == (tmp_path / "src" / "b.bin").read_bytes()

    assert run(capsys, "settings", "--soft-delete-days", "0")[0] == 0
    code, out, err = run(capsys, "forget", first)
    assert code == 0 and "forgot 1" in out, (out, err)
    assert (junk in err) != junk.startswith("index/"), err  # forget reads no index either
    code, out, err = run(capsys, "prune", "--grace-hours", "0", "--json")
    assert code == 0 and junk in err, err
    assert json.loads(out)["points_removed"] == [first]
    assert (tmp_path / "vault" / junk).exists(), "prune must leave the junk object alone"

    code, out, err = run(capsys, "check")
    assert code == 1 and junk in out + err
    code, out, err = run(capsys, "check", "--repair")
    assert code == 0, out + err
    assert not (tmp_path / "vault" / junk).exists()
    code, out, err = run(capsys, "check", "--read-data")
    assert code == 0 and not err and "no errors" in out
    code, _, err = run(capsys, "restore", "files", second, "--target", str(tmp_path / "o2"))
    assert code == 0 and not err


@pytest.mark.parametrize("kind", [*sorted(JUNK), "copy"])
def test_junk_index_object(env: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    backup(capsys, env)  # so that a real index object exists to copy
    make = copy_of_real_index if kind == "copy" else JUNK[kind]
    junk = plant(env, "index/", make)
    exercise(capsys, env, junk)


@pytest.mark.parametrize("kind", sorted(JUNK))
def test_junk_point_object(env: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    junk = plant(env, "points/", JUNK[kind])
    exercise(capsys, env, junk)


def test_genuine_point_under_a_wrong_name(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real point renamed by hand: skipped and reported, prune refuses to collect its data,
    check --repair stores it under its right name again."""
    point, _ = backup(capsys, env)
    vault_dir = env / "vault"
    (vault_dir / "points" / point).rename(vault_dir / "points" / ("0" * 64))
    code, out, err = run(capsys, "points", "--json")
    assert code == 0 and json.loads(out) == [] and "genuine recovery point" in err
    code, _, err = run(capsys, "prune", "--grace-hours", "0")
    assert code == 1 and "check --repair" in err and "points/" + "0" * 64 in err
    assert len(list((vault_dir / "data").rglob("*"))) > 1, "nothing was deleted"
    code, out, err = run(capsys, "check", "--repair")
    assert code == 0 and "right name" in out, out + err
    code, out, _ = run(capsys, "points", "--json")
    assert [p["id"] for p in json.loads(out)] == [point]
    code, _, err = run(capsys, "restore", "files", point, "--target", str(env / "out"))
    assert code == 0 and not err


def test_prune_keeps_packs_a_damaged_index_object_may_list(tmp_path: Path) -> None:
    """Packs that only an unreadable index object lists are kept (unknown), never collected as
    orphans; after check --repair the next prune collects what no point needs."""
    from strongroom.vault import KDFParams
    from strongroom.vault.forget import soft_delete
    from strongroom.vault.repair import repair
    from strongroom.vault.settings import change_settings

    backend = LocalBackend(tmp_path / "v")
    vault = Vault.init(backend, PASSPHRASE, kdf=KDFParams(1, 1024, 1))
    change_settings(vault, soft_delete_days=0)
    a = write_point(vault, random_chunks(1, 4), source="a")
    packs_before = {i.name for i in backend.list("data/")}
    (damaged,) = {i.name for i in backend.list("index/")}
    b = write_point(vault, random_chunks(2, 4), source="b")
    data = bytearray(backend.get(damaged))
    data[-3] ^= 0x40
    backend.put(damaged, bytes(data))
    assert content_digest(bytes(data)).hex() != damaged
    soft_delete(vault, a.point, "test")
    fresh = Vault.open(backend, PASSPHRASE, strict=False)
    report = prune(fresh, PruneOptions(grace_seconds=0))
    assert report.points_removed == [a.point.point_id]
    assert report.packs_unknown == len(packs_before) and report.orphan_packs == 0
    assert packs_before <= {i.name for i in backend.list("data/")}
    assert backend.get(damaged) == bytes(data)
    repair(Vault.open(backend, PASSPHRASE, strict=False))
    again = prune(Vault.open(backend, PASSPHRASE), PruneOptions(grace_seconds=0))
    assert again.packs_unknown == 0
    assert not packs_before & {i.name for i in backend.list("data/")}
    final = Vault.open(backend, PASSPHRASE)
    for cid, chunk in b.chunks.items():
        assert final.read_chunk(cid) == chunk
