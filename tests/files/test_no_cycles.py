"""A files backup leaves no reference cycle behind: the vault, the writer and its pack
buffers go when the backup returns, not when the collector next runs (a long-running agent
runs one job after another; an idle TLS connection kept open holds a server's stop)."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.files import BackupOptions, backup_files
from strongroom.vault import Vault

_HELD = {"TreeWalker", "ChunkWriter", "PackBuilder", "FileReader", "ContentReader"}


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@pytest.mark.parametrize("processes", [0, 2])
def test_a_files_backup_leaves_no_cycle(
    tmp_path: Path, vault: Vault, collector_off: None, processes: int
) -> None:
    data = tmp_path / "data"
    for d in range(4):
        (data / f"d{d}").mkdir(parents=True)
        for i in range(30):
            (data / f"d{d}" / f"f{i}").write_bytes(os.urandom(100 + i))
    (data / "big").write_bytes(os.urandom(3 << 20))  # read in chunks by this process
    opts = BackupOptions([str(data)], source="s", processes=processes, processes_after=1)
    summary = backup_files(vault, opts)
    assert summary.files == 121
    gc.collect()
    left = {type(o).__name__ for o in gc.garbage} & _HELD
    assert not left, f"held by a reference cycle: {sorted(left)}"
