"""A files backup reads on its walking thread until the walk has found enough to read
(walkreads._ALONE_FILES, _ALONE_BYTES): a small tree starts no reader thread at all."""

from __future__ import annotations

import random
import threading
from pathlib import Path

from strongroom.files import BackupOptions, backup_files
from strongroom.vault import Vault


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


def test_reader_threads_start_once_there_are_many_files(tmp_path: Path, vault: Vault) -> None:
    _files(tmp_path / "src", 1500, 100)
    assert _readers_seen(vault, tmp_path / "src") == (True, 1500)


def test_reader_threads_start_for_a_big_file(tmp_path: Path, vault: Vault) -> None:
    _files(tmp_path / "src", 3, 24 << 20)
    assert _readers_seen(vault, tmp_path / "src") == (True, 3)
