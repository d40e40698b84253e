"""A durable restore starts each big file's write-back as soon as the file is finished
(``placing.start_writeback``), so the batch's ``syncfs`` waits for less; small files and
restores that are not made durable are left to the kernel."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from strongroom.files import BackupOptions, RestoreOptions, backup_files, fetch, restore_files
from strongroom.files.placing import start_writeback
from strongroom.vault import Vault

BIG = fetch.WRITEBACK_MIN


@pytest.fixture
def source(tmp_path: Path, vault: Vault) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i, size in enumerate((BIG, BIG + 12_345, 3 * BIG, 10_000, 1, BIG - 1)):
        (src / f"f{i}").write_bytes(os.urandom(size))
    backup_files(vault, BackupOptions([str(src)], source="wb"))
    return src


@pytest.mark.parametrize("durable", [True, False])
def test_big_files_of_a_durable_restore_start_their_writeback(
    tmp_path: Path, vault: Vault, source: Path, monkeypatch: pytest.MonkeyPatch, durable: bool
) -> None:
    started: list[int] = []

    def spy(fd: int) -> None:  # records which files, then does the real thing
        started.append(os.fstat(fd).st_size)
        start_writeback(fd)

    monkeypatch.setattr(fetch, "start_writeback", spy)
    target = tmp_path / "restored"
    opts = RestoreOptions(target, durable=durable)
    summary = restore_files(vault, vault.resolve_point("latest"), opts)
    assert summary.errors == []
    for f in source.iterdir():
        assert (target / source.relative_to("/") / f.name).read_bytes() == f.read_bytes()
    assert sorted(started) == ([BIG, BIG + 12_345, 3 * BIG] if durable else [])


def test_starting_writeback_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = os.urandom(3 * BIG + 7)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
        start_writeback(fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == data
