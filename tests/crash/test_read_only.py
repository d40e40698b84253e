"""A vault on a read-only mount: every reading command works (without a lock, with one
warning line), every writing command fails with one clear line and exit 1."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.errors import ReadOnlyStorage
from strongroom.storage import LocalBackend
from strongroom.vault import Vault
from strongroom.vault.locks import NoLock
from tests.conftest import PASSPHRASE
from tests.crash._support import cli, init_vault, make_disk, make_tree, ok, tree_digest

WARNING = "warning: reading without a lock (read-only file system while writing locks/"


@pytest.fixture
def ro_vault(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """A vault with a files point and a disk point, then seen through a read-only bind mount:
    (read-only vault path, files source, disk image)."""
    if os.geteuid() != 0:
        pytest.skip("bind mounts need root")
    vault, source, disk = tmp_path / "vault", tmp_path / "src", tmp_path / "disk.raw"
    init_vault(vault)
    make_tree(source, seed=5, files=6, size=200_000)
    make_disk(disk, seed=5, size=4 << 20)
    ok(cli(vault, "backup", "files", str(source), "--source", "tree"))
    ok(cli(vault, "backup", "files", str(source / "d0"), "--source", "tree"))
    ok(cli(vault, "backup", "disk", str(disk), "--source", "disk"))
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "--bind", str(vault), str(mount)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=True)
        yield mount, source, disk
    finally:
        subprocess.run(["umount", str(mount)], check=True)


READS = [
    ("points",),
    ("points", "--json"),
    ("stats",),
    ("check",),
    ("check", "--read-data"),
    ("ls", "latest", "-R", "--source", "tree"),
    ("find", "*.bin"),
    ("diff", "latest", "--source", "tree"),
]


def test_reading_commands_work_on_a_read_only_vault(
    ro_vault: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    vault, source, disk = ro_vault
    for args in READS:
        run = ok(cli(vault, *args))
        assert run.err.startswith(WARNING) and run.err.count("\n") == 1, (args, run.err)
        if args[0] in ("points", "ls"):  # --no-lock: the same without the warning
            quiet = ok(cli(vault, *args, "--no-lock"))
            assert quiet.err == "" and quiet.out == run.out, (args, quiet.err)
    run = ok(
        cli(
            vault, "restore", "files", "latest", "--source", "tree", "--target", str(tmp_path / "t")
        )
    )
    assert run.err.startswith(WARNING)
    got = tree_digest(tmp_path / "t" / source.relative_to("/") / "d0")
    assert got == tree_digest(source / "d0")
    out = tmp_path / "restored.raw"
    ok(cli(vault, "restore", "disk", "latest", "--source", "disk", "--to", str(out), "--no-lock"))
    assert out.read_bytes() == disk.read_bytes()
    assert not list(vault.rglob(".tmp-*"))


@pytest.mark.parametrize(
    "args",
    [
        ("backup", "files", "SOURCE"),
        ("forget", "--keep-last", "1"),
        ("prune",),
        ("check", "--repair"),
    ],
    ids=["backup", "forget", "prune", "repair"],
)
def test_writing_commands_fail_clearly(
    ro_vault: tuple[Path, Path, Path], args: tuple[str, ...]
) -> None:
    vault, source, _ = ro_vault
    run = cli(vault, *(str(source) if a == "SOURCE" else a for a in args))
    assert run.code == 1, run.err
    assert run.err.startswith("error: the vault is read-only (read-only file system"), run.err
    assert run.err.count("\n") == 1 and "Traceback" not in run.err


def test_no_lock_is_refused_with_repair(ro_vault: tuple[Path, Path, Path]) -> None:
    run = cli(ro_vault[0], "check", "--repair", "--no-lock")
    assert run.code == 2 and "--no-lock" in run.err


def test_read_lock_api(ro_vault: tuple[Path, Path, Path]) -> None:
    vault = Vault.open(LocalBackend(ro_vault[0]), PASSPHRASE)
    told: list[str] = []
    vault.on_no_lock = told.append
    with vault.read_lock() as first, vault.read_lock() as second:
        assert isinstance(first, NoLock) and isinstance(second, NoLock)
    assert len(told) == 1 and "read-only file system" in told[0]  # said once per handle
    with pytest.raises(ReadOnlyStorage, match="the vault is read-only"):
        vault.lock()
