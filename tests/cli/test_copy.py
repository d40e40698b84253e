"""``strongroom copy``: points copied between vaults with other passphrases (chunk ids
recomputed, trees remapped), only missing chunks stored, resumable, filtered; bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from strongroom.cli.main import main
from strongroom.storage import LocalBackend, MemoryBackend
from strongroom.vault import Vault, check_vault
from strongroom.vault.copy import copy_points
from tests.conftest import FAST_KDF

SRC_PW = "source passphrase"
DST_PW = "destination passphrase"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def vaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    src, dst = tmp_path / "src-vault", tmp_path / "dst-vault"
    Vault.init(LocalBackend(src), SRC_PW, kdf=FAST_KDF)
    Vault.init(LocalBackend(dst), DST_PW, kdf=FAST_KDF)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("STRONGROOM_PASSWORD_FILE", raising=False)
    monkeypatch.setenv("STRONGROOM_FROM_PASSWORD", SRC_PW)
    monkeypatch.setenv("STRONGROOM_PASSWORD", DST_PW)
    monkeypatch.setenv("STRONGROOM_VAULT", str(dst))
    return src, dst


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def backup(capsys: pytest.CaptureFixture[str], vault: Path, *args: str) -> str:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STRONGROOM_PASSWORD", SRC_PW)
        code, out, err = run(capsys, "backup", *args, "-r", str(vault), "--json")
    assert code == 0, err
    return str(json.loads(out)["point"])


def copy(capsys: pytest.CaptureFixture[str], src: Path, *args: str) -> Any:
    code, out, err = run(capsys, "copy", "--from", str(src), *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_files_point_copies_byte_identical_and_dedups(
    vaults: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src_vault, dst_vault = vaults
    data = tmp_path / "data"
    (data / "deep" / "er").mkdir(parents=True)
    (data / "deep" / "er" / "big").write_bytes(os.urandom(3 << 20))
    (data / "small").write_text("small")
    (data / "link").symlink_to("small")
    first = backup(capsys, src_vault, "files", str(data))
    doc = copy(capsys, src_vault)
    assert [c["from"] for c in doc["copied"]] == [first]
    first_new = doc["chunks_new"]
    (data / "added").write_bytes(os.urandom(1 << 20))
    second = backup(capsys, src_vault, "files", str(data))
    doc = copy(capsys, src_vault)
    assert [c["from"] for c in doc["skipped"]] == [first]
    (copied,) = doc["copied"]
    assert copied["from"] == second
    assert 0 < doc["chunks_new"] < first_new  # the big file dedups
    target = tmp_path / "restored"
    code, _, err = run(capsys, "restore", "files", copied["point"], "-t", str(target))
    assert code == 0, err
    assert tree(target / data.relative_to("/")) == tree(data)
    assert (target / data.relative_to("/") / "link").readlink() == Path("small")
    dst = Vault.open(LocalBackend(dst_vault), DST_PW)
    assert check_vault(dst, read_data=True).ok
    p = dst.resolve_point(copied["point"])
    assert p.manifest.parent == doc["skipped"][0]["point"]
    assert p.manifest.meta["copied_from"]["point"] == second
    assert (
        p.manifest.source
        == Vault.open(LocalBackend(src_vault), SRC_PW).resolve_point(second).manifest.source
    )


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-utils")
def test_a_disk_point_copies_byte_identical(
    vaults: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src_vault, _ = vaults
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(8 << 20)
        f.write(os.urandom(1 << 20))
        f.seek(5 << 20)
        f.write(os.urandom(300_000))
    point = backup(capsys, src_vault, "disk", str(image))
    doc = copy(capsys, src_vault, "--kind", "disk")
    (copied,) = doc["copied"]
    assert copied["from"] == point
    out = tmp_path / "out.img"
    code, _, err = run(capsys, "restore", "disk", copied["point"], "--to", str(out))
    assert code == 0, err
    assert out.read_bytes() == image.read_bytes()


def test_filters_by_source_kind_and_time(
    vaults: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src_vault, _ = vaults
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x")
    a = backup(capsys, src_vault, "files", str(data), "--source", "a")
    b = backup(capsys, src_vault, "files", str(data), "--source", "b")
    assert copy(capsys, src_vault, "--kind", "disk")["copied"] == []
    assert copy(capsys, src_vault, "--since", "2999-01-01")["copied"] == []
    assert copy(capsys, src_vault, "--until", "2000-01-01T00:00+00:00")["copied"] == []
    doc = copy(capsys, src_vault, "--source", "b", "--since", "2000-01-01")
    assert [c["from"] for c in doc["copied"]] == [b]
    doc = copy(capsys, src_vault)
    assert [c["from"] for c in doc["copied"]] == [a]
    assert [c["from"] for c in doc["skipped"]] == [b]


def test_an_interrupted_copy_resumes(
    vaults: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed after the chunks are stored and indexed but before the point: the rerun
    commits it without storing a chunk again."""
    src_vault, dst_vault = vaults
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_bytes(os.urandom(2 << 20))
    backup(capsys, src_vault, "files", str(data))
    env = {**os.environ, "STRONGROOM_FAILPOINT": "after-index"}
    argv = [sys.executable, "-m", "strongroom.cli.main", "copy", "--from", str(src_vault)]
    killed = subprocess.run(argv, env=env, capture_output=True, check=False, timeout=120)
    assert killed.returncode == -9
    assert Vault.open(LocalBackend(dst_vault), DST_PW).points() == []
    doc = copy(capsys, src_vault)
    assert len(doc["copied"]) == 1 and doc["chunks_new"] == 0


def test_copy_to_another_backend_in_the_library(vaults: tuple[Path, Path], tmp_path: Path) -> None:
    from strongroom.files import BackupOptions, backup_files

    src = Vault.open(LocalBackend(vaults[0]), SRC_PW)
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_bytes(os.urandom(100_000))
    backup_files(src, BackupOptions(paths=[str(data)], use_cache=False))
    dst = Vault.init(MemoryBackend(), "memory", kdf=FAST_KDF)
    report = copy_points(src, dst, src.points())
    assert len(report.copied) == 1 and report.chunks_new >= 2
    assert check_vault(dst, read_data=True).ok
    assert len(copy_points(src, dst, src.points()).skipped) == 1


def test_bad_input(
    vaults: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src_vault, dst_vault = vaults
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "copy", "--from", str(src_vault), "-r", str(empty))
    assert code == 1 and "not a strongroom vault" in err and err.count("\n") == 1
    code, _, err = run(capsys, "copy", "--from", str(dst_vault))
    assert code == 1 and "same vault" in err
    code, _, err = run(
        capsys, "copy", "--from", str(src_vault), "--from-password-command", "echo wrong"
    )
    assert code == 1 and "wrong passphrase" in err and err.count("\n") == 1
    assert run(capsys, "copy", "--from", str(src_vault), "--kind", "tape")[0] == 2
    assert run(capsys, "copy", "--from", str(src_vault), "--since", "yesterday")[0] == 2
    assert run(capsys, "copy")[0] == 2
