"""A files backup reads small files on its walking thread, always, and big ones there too until
the walk has found enough to read (walkreads._ALONE_FILES, _ALONE_BYTES): a tree of small
files starts no reader thread at all."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from strongroom.files import BackupOptions, backup_files, walkreads
from strongroom.vault import Vault

BIG = 260 << 10  # past the chunker's 256 KiB minimum: a file read alone, by a thread once due


def _readers_seen(vault: Vault, src: Path) -> tuple[bool, int]:
    """Whether a reader thread ran during a first backup of ``src`` (looked for at every
    progress report), and the files it backed up."""
    seen = False

    def progress(files: int, size: int, where: str) -> None:
        nonlocal seen
        seen = seen or any(t.name.startswith("files-read") for t in threading.enumerate())

    summary = backup_files(vault, BackupOptions([str(src)], source="t", processes=0), progress)
    return seen, summary.files_new


def _files(root: Path, count: int, size: int) -> None:
    rng = random.Random(count)
    for i in range(count):
        folder = root / f"d{i // 100}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}").write_bytes(rng.randbytes(size))


def test_a_small_tree_is_read_by_the_walk_alone(tmp_path: Path, vault: Vault) -> None:
    _files(tmp_path / "src", 400, 3000)
    assert _readers_seen(vault, tmp_path / "src") == (False, 400)


def test_many_small_files_are_read_by_the_walk_too(tmp_path: Path, vault: Vault) -> None:
    """Past _ALONE_FILES: a reader thread would trade the interpreter lock with the walk at
    every small file's system call, compression and encryption."""
    _files(tmp_path / "src", 1500, 100)
    assert _readers_seen(vault, tmp_path / "src") == (False, 1500)


def test_reader_threads_start_once_there_are_many_big_files(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(walkreads, "_ALONE_FILES", 10)  # not 1,000 files of 260 KiB
    _files(tmp_path / "src", 30, BIG)
    assert _readers_seen(vault, tmp_path / "src") == (True, 30)


def test_reader_threads_start_once_there_are_many_bytes(tmp_path: Path, vault: Vault) -> None:
    _files(tmp_path / "src", 70, BIG)  # 17.8 MiB, past _ALONE_BYTES
    assert _readers_seen(vault, tmp_path / "src") == (True, 70)


def test_reader_threads_start_for_a_big_file(tmp_path: Path, vault: Vault) -> None:
    _files(tmp_path / "src", 3, 24 << 20)
    assert _readers_seen(vault, tmp_path / "src") == (True, 3)
