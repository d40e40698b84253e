"""The files cache inserts folder rows in batches and looks nothing up in a first backup: the
rows land all the same (a second backup reads nothing again), a folder stored and looked up
before its batch went in is found, the last row of a folder wins, and a worker process's
reader of an empty cache asks nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from strongroom.files import BackupOptions, backup_files, cache
from strongroom.files.cache import CacheReader, FilesCache
from strongroom.files.cacherows import CacheRow, encode_record
from strongroom.vault import Vault

_KEY = b"k" * 32


def _row(directory: bytes, name: bytes, size: int) -> bytes:
    row: CacheRow = (directory, name, 7, size, 10**18, 10**18, [b"c" * 32], None, 0, ())
    return encode_record(row)


def test_rows_are_found_before_and_after_their_batch_goes_in(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    first = FilesCache(path, _KEY)
    first.store(b"/seed", [], [_row(b"/seed", b"x", 1)])  # not empty from here on
    first.commit()
    first.close()
    fc = FilesCache(path, _KEY)
    dirs = [b"/d%03d" % i for i in range(cache._ROWS_AT_ONCE + 40)]
    for d in dirs:
        fc.store(d, [], [_row(d, b"f", 1)])
    fc.store(dirs[-1], [], [_row(dirs[-1], b"f", 2)])  # stored again: this one wins
    assert fc.lookup_dir(dirs[-1]).found[b"f"].size == 2  # still waiting in the batch
    fc.commit()
    fc.close()
    again = FilesCache(path, _KEY)
    assert all(again.lookup_dir(d).found[b"f"].size == 1 for d in dirs[:-1])
    assert again.lookup_dir(dirs[-1]).found[b"f"].size == 2
    again.close()


def test_a_batch_of_big_rows_goes_in_by_its_bytes(tmp_path: Path) -> None:
    """Folders of many files make big rows: a batch goes in at 256 KiB of them, before 256
    rows, and every row still lands."""
    path = tmp_path / "cache.db"
    fc = FilesCache(path, _KEY)
    dirs = [b"/big%03d" % i for i in range(60)]
    most = 0
    for d in dirs:
        fc.store(d, [], [_row(d, b"f%04d" % i, i) for i in range(150)])
        most = max(most, fc._rows_bytes)  # what waits, after each folder's row
    assert 0 < most < cache._ROW_BYTES_AT_ONCE
    fc.commit()
    fc.close()
    again = FilesCache(path, _KEY)
    for d in dirs:
        found = again.lookup_dir(d).found
        assert len(found) == 150 and found[b"f0149"].size == 149
    again.close()


def test_a_first_backup_looks_nothing_up_and_the_second_reads_nothing(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    for d in range(cache._ROWS_AT_ONCE + 20):  # more folders than a batch of rows
        (src / f"d{d:03}").mkdir(parents=True)
        (src / f"d{d:03}" / "f").write_bytes(b"%d" % d)
    time.sleep(0.2)  # out of the racy window: every file gets its row
    looked: list[bytes] = []
    real = cache.read_dir_rows

    def counted(*args: object) -> object:
        looked.append(args[2])  # type: ignore[arg-type]
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(cache, "read_dir_rows", counted)
    opts = BackupOptions([str(src)], source="s", processes=0)
    first = backup_files(vault, opts)
    assert first.files_new == cache._ROWS_AT_ONCE + 20 and looked == []
    second = backup_files(vault, opts)
    assert second.files_unchanged == second.files and second.bytes_read == 0
    assert looked  # the folders' rows were read this time


def test_a_workers_reader_of_an_empty_cache_asks_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    FilesCache(path, _KEY).close()  # the tables, no rows
    reader = CacheReader(path, _KEY)
    assert reader._db is None and reader.lookup_dir(b"/x").found == {}
    fc = FilesCache(path, _KEY)
    fc.store(b"/x", [], [_row(b"/x", b"f", 1)])
    fc.commit()
    fc.close()
    reader = CacheReader(path, _KEY)
    assert reader.lookup_dir(b"/x").found[b"f"].size == 1
    reader.close()
