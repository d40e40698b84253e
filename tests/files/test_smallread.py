"""The compiled read of a small file (files/_smallread.c, files/reading.py): the same outcome
as the general way, and back to the general way whenever the file is not what the walker saw."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.chunking import BytesLike, ContentChunker
from strongroom.files import (
    BackupOptions,
    RestoreOptions,
    _smallread,
    backup_files,
    reading,
    restore_files,
)
from strongroom.files.content import ContentReader
from strongroom.files.metadata import FL_NODUMP, Names, flags_read, node_from_stat, xattrs_listed
from strongroom.files.reading import FileItem, FileOutcome, FileReader
from strongroom.vault import Vault

SMALL = ContentChunker().params.min_size


def _put(data: BytesLike) -> bytes:
    return blake3(data).digest()


def _read(path: Path, compiled: bool, monkeypatch: pytest.MonkeyPatch) -> FileOutcome:
    st = os.lstat(path)
    node = node_from_stat(os.fsencode(path.name), st, Names())
    assert node is not None
    item = FileItem(object(), os.fsencode(path.parent), node, None, st)
    with monkeypatch.context() as m:
        if not compiled:
            m.setattr(reading, "_smallread", None)
        return FileReader(ContentReader(ContentChunker(), _put), Names()).one(item)


def _same_outcome(a: FileOutcome, b: FileOutcome) -> None:
    assert (a.status, a.nread, a.error, a.meta_error) == (b.status, b.nread, b.error, b.meta_error)
    assert a.item.node == b.item.node
    assert a.cache_row == b.cache_row


def _old(path: Path) -> None:
    """An old mtime (the ctime is now: the caller waits out ``RACY_NS`` for a cache row)."""
    os.utime(path, ns=(1_600_000_000_000_000_000,) * 2)


def test_the_same_outcome_as_the_general_way(
    ext4: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = ext4("small")
    files = {
        "empty": b"",
        "one": b"x",
        "text": b"hello\n" * 100,
        "edge": os.urandom(SMALL - 1),
        "xattrs": b"with xattrs",
        "nodump": b"with a flag",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    os.setxattr(root / "xattrs", "user.b", b"second")
    os.setxattr(root / "xattrs", "user.a", bytes(range(256)))
    os.setxattr(root / "xattrs", "user.empty", b"")
    subprocess.run(["chattr", "+d", str(root / "nodump")], check=True)
    for name in files:
        _old(root / name)
    time.sleep(reading.RACY_NS / 1e9 + 0.05)
    for name, data in files.items():
        fast = _read(root / name, True, monkeypatch)
        slow = _read(root / name, False, monkeypatch)
        _same_outcome(fast, slow)
        assert fast.status == "new" and fast.nread == len(data) and fast.cache_row is not None
        assert fast.item.node.chunks == ([_put(data)] if data else [])
    xattrs = _read(root / "xattrs", True, monkeypatch).item.node.xattrs
    assert xattrs == (("user.a", bytes(range(256))), ("user.b", b"second"), ("user.empty", b""))
    assert _read(root / "nodump", True, monkeypatch).item.node.flags == FL_NODUMP


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=3 * SMALL // 2), grow=st.binary(max_size=64))
def test_property_same_outcome_and_changes_fall_back(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, grow: bytes
) -> None:
    folder = tmp_path_factory.mktemp("prop")
    path = folder / "f"
    path.write_bytes(data)
    _old(path)
    with pytest.MonkeyPatch.context() as m:
        _same_outcome(_read(path, True, m), _read(path, False, m))
    st_before = os.lstat(path)
    buffer = memoryview(bytearray(SMALL + 1))
    args = (st_before.st_size, st_before.st_ino, st_before.st_mtime_ns, st_before.st_ctime_ns)
    got = _smallread.read_small(os.fsencode(path), buffer, *args, True)
    if len(data) < SMALL:
        assert got is not None and bytes(buffer[: got[0]]) == data
    else:
        assert got is None  # it fills the buffer: not a small file
    if grow:
        with open(path, "ab") as f:
            f.write(grow)
        # the walker's lstat no longer holds: the general way reads it
        assert _smallread.read_small(os.fsencode(path), buffer, *args, True) is None


def test_the_small_file_buffer_starts_on_a_page() -> None:
    """Small files are read from their start into it: page-aligned, the kernel's copy runs
    at full speed on every machine (anonmem.py says why); one per thread."""
    reader = ContentReader(ContentChunker(), _put)
    views: list[memoryview] = []
    thread = threading.Thread(target=lambda: views.append(reader.buffer()))
    thread.start()
    thread.join()
    views.append(reader.buffer())
    assert views[1] is reader.buffer()
    assert len({id(v) for v in views}) == 2
    for view in views:
        assert len(view) == reader.small + 1
        assert ctypes.addressof(ctypes.c_char.from_buffer(view)) % mmap.PAGESIZE == 0


def test_what_the_walker_did_not_see_is_left_to_the_general_way(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"content")
    st_ = os.lstat(path)
    buffer = memoryview(bytearray(SMALL + 1))
    raw = os.fsencode(path)
    size, ino, mt, ct = st_.st_size, st_.st_ino, st_.st_mtime_ns, st_.st_ctime_ns
    assert _smallread.read_small(raw, buffer, size, ino, mt, ct, True) is not None
    assert _smallread.read_small(raw, buffer, size, ino + 1, mt, ct, True) is None
    assert _smallread.read_small(raw, buffer, size, ino, mt + 1, ct, True) is None
    assert _smallread.read_small(raw, buffer, size, ino, mt, ct + 1, True) is None
    assert _smallread.read_small(raw, buffer, size + 1, ino, mt, ct, False) is None
    (tmp_path / "link").symlink_to(path)
    with pytest.raises(OSError) as link:
        _smallread.read_small(os.fsencode(tmp_path / "link"), buffer, size, ino, mt, ct, True)
    assert link.value.errno == errno.ELOOP  # never followed
    with pytest.raises(FileNotFoundError):
        _smallread.read_small(os.fsencode(tmp_path / "gone"), buffer, 0, 0, 0, 0, True)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError):  # opened without blocking, and not readable with pread
        _smallread.read_small(os.fsencode(tmp_path / "fifo"), buffer, 0, 0, 0, 0, True)
    with pytest.raises(ValueError):
        _smallread.read_small(b"bad\0path", buffer, 0, 0, 0, 0, True)


def test_a_file_replaced_by_a_fifo_is_reported_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a file, then a fifo")
    st_ = os.lstat(path)
    node = node_from_stat(b"f", st_, Names())
    assert node is not None
    path.unlink()
    os.mkfifo(path)
    item = FileItem(object(), os.fsencode(tmp_path), node, None, st_)
    out = FileReader(ContentReader(ContentChunker(), _put), Names()).one(item)
    assert out.status == "error" and out.error == "no longer a regular file"


class _ChangedFirst:
    """``_smallread`` whose file changes after the walker's lstat, before it is read."""

    def __init__(self, victim: Path) -> None:
        self.victim = os.fsencode(victim)
        self.calls = 0

    def read_small(self, path: bytes, *args: Any) -> Any:
        if path == self.victim and not self.calls:
            self.calls += 1
            with open(path, "ab") as f:
                f.write(b" and more")
        return _smallread.read_small(path, *args)


def test_a_file_changed_since_the_walk_is_read_again(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "busy").write_bytes(b"first")
    (src / "calm").write_bytes(b"calm")
    wrapper = _ChangedFirst(src / "busy")
    monkeypatch.setattr(reading, "_smallread", wrapper)
    summary = backup_files(vault, BackupOptions([str(src)], source="s"))
    assert wrapper.calls == 1 and summary.inconsistent == [] and summary.errors == []
    out = tmp_path / "out"
    restore_files(vault, vault.resolve_point(summary.point_id), RestoreOptions(out))
    assert (out / os.path.relpath(src, "/") / "busy").read_bytes() == b"first and more"


def test_metadata_errors_map_as_the_general_way() -> None:
    assert xattrs_listed([], errno.ENOTSUP) == ()
    assert xattrs_listed([(b"user.z", b"1"), (b"user.a", b"2")], 0) == (
        ("user.a", b"2"),
        ("user.z", b"1"),
    )
    with pytest.raises(OSError, match="Permission denied"):
        xattrs_listed([], errno.EACCES)
    assert flags_read(0x80000 | FL_NODUMP, 0) == FL_NODUMP  # the file system's own flags go
    assert flags_read(0, errno.ENOTTY) == 0
    with pytest.raises(OSError):
        flags_read(0, errno.EIO)
