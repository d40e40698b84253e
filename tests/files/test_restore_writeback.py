"""What a restore leaves in the page cache.  Big files are written past it (``O_DIRECT``) from
``fetch.DIRECT_FROM`` on; where the file system cannot, a durable restore starts each big
file's write-back as soon as it is finished (``placing.start_writeback``) so the batch's
``syncfs`` waits for less.  After that ``syncfs`` a durable restore drops the batch's pages
(``placing.drop_cached``).  Restores that are not made durable leave their files to the
kernel."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from strongroom.files import BackupOptions, RestoreOptions, backup_files, fetch, restore_files
from strongroom.files.contents import DROP_FROM
from strongroom.files.placing import start_writeback
from strongroom.storage import directio
from strongroom.vault import Vault
from tests.pagecache import resident_pages

BIG = fetch.DIRECT_FROM
SIZES = (BIG, BIG + 12_345, 3 * BIG, 10_000, 1, BIG - 1, DROP_FROM)
BIG_ONES = sorted(s for s in SIZES if s >= BIG)


@pytest.fixture
def source(tmp_path: Path, vault: Vault) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i, size in enumerate(SIZES):
        (src / f"f{i}").write_bytes(os.urandom(size))
    backup_files(vault, BackupOptions([str(src)], source="wb"))
    return src


def _spy(
    monkeypatch: pytest.MonkeyPatch, name: str, real: Callable[[int], int | None]
) -> list[int]:
    """Wrap ``fetch.<name>``: record the size of each file it is called on, then call through."""
    sizes: list[int] = []

    def wrapped(fd: int) -> int | None:
        sizes.append(os.fstat(fd).st_size)
        return real(fd)

    monkeypatch.setattr(fetch, name, wrapped)
    return sizes


def _restore(tmp_path: Path, vault: Vault, source: Path, durable: bool) -> None:
    target = tmp_path / "restored"
    summary = restore_files(
        vault, vault.resolve_point("latest"), RestoreOptions(target, durable=durable)
    )
    assert summary.errors == []
    for f in source.iterdir():
        assert (target / source.relative_to("/") / f.name).read_bytes() == f.read_bytes()


def test_big_files_are_written_direct_and_need_no_early_writeback(
    tmp_path: Path, vault: Vault, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct = _spy(monkeypatch, "open_direct", directio.open_direct)
    started = _spy(monkeypatch, "start_writeback", start_writeback)
    _restore(tmp_path, vault, source, durable=True)
    assert sorted(direct) == [0] * len(BIG_ONES)  # opened direct while still empty
    assert started == []


@pytest.mark.parametrize("durable", [True, False])
def test_without_direct_io_a_durable_restore_starts_big_files_writeback(
    tmp_path: Path, vault: Vault, source: Path, monkeypatch: pytest.MonkeyPatch, durable: bool
) -> None:
    # a file system without O_DIRECT (open_direct's answer there), which this one is not
    monkeypatch.setattr(fetch, "open_direct", lambda fd: -1)
    started = _spy(monkeypatch, "start_writeback", start_writeback)
    _restore(tmp_path, vault, source, durable=durable)
    assert sorted(started) == (BIG_ONES if durable else [])


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


@pytest.mark.parametrize("durable", [True, False])
def test_a_durable_restore_leaves_what_it_wrote_out_of_the_page_cache(
    tmp_path: Path, vault: Vault, source: Path, durable: bool
) -> None:
    target = tmp_path / "restored"
    opts = RestoreOptions(target, durable=durable)
    assert restore_files(vault, vault.resolve_point("latest"), opts).errors == []
    buffered = [f for f in source.iterdir() if DROP_FROM <= f.stat().st_size < fetch.DIRECT_FROM]
    assert buffered  # written through the page cache, big enough to be dropped
    cached = [resident_pages(target / source.relative_to("/") / f.name) for f in buffered]
    if durable:  # made durable, then dropped (placing.drop_cached)
        assert cached == [0] * len(buffered)
    else:  # left to the kernel
        assert all(n > 0 for n in cached)
