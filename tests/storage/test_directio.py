"""Direct-I/O writes: exact bytes on every path, and the page cache really bypassed."""

from __future__ import annotations

import fcntl
import mmap
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.storage import directio
from strongroom.storage.local import LocalBackend
from tests.pagecache import resident_pages

MiB = 1 << 20


def _mapped(data: bytes) -> mmap.mmap:
    buf = mmap.mmap(-1, max(len(data), 1))
    buf[: len(data)] = data
    return buf


def _write(path: Path, data: bytes | bytearray | memoryview) -> bytes:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        directio.write_all(fd, data)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        assert not flags & os.O_DIRECT, "the descriptor must be left as it was"
        os.fsync(fd)
    finally:
        os.close(fd)
    return path.read_bytes()


def test_aligned_buffer_goes_direct_and_keeps_every_byte(tmp_path: Path) -> None:
    data = os.urandom(4 * MiB + 1234)
    buf = _mapped(data)
    path = tmp_path / "pack"
    _write_only(path, memoryview(buf)[: len(data)])
    assert resident_pages(path) <= 2, "the aligned body must not pass through the page cache"
    assert path.read_bytes() == data


def _write_only(path: Path, view: memoryview) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        directio.write_all(fd, view)
        os.fsync(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind", ["bytes", "unaligned", "small"])
def test_other_buffers_take_the_buffered_path(tmp_path: Path, kind: str) -> None:
    data = os.urandom(2 * MiB + 7)
    source: bytes | memoryview
    if kind == "bytes":
        source = data  # read-only: cannot be addressed for direct I/O
    elif kind == "unaligned":
        source = memoryview(_mapped(b"x" + data))[1 : 1 + len(data)]
    else:
        data = data[:5000]
        source = memoryview(_mapped(data))[: len(data)]
    assert _write(tmp_path / "obj", source) == data


def test_file_system_without_direct_io(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.fail("/dev/shm (tmpfs) is needed for this test")
    data = os.urandom(3 * MiB)
    path = shm / f"strongroom-directio-{os.getpid()}"
    try:
        assert _write(path, memoryview(_mapped(data))[: len(data)]) == data
    finally:
        path.unlink(missing_ok=True)


def test_local_backend_put_of_a_mapped_pack(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    data = os.urandom(5 * MiB + 99)
    backend.put("data/ab/pack", memoryview(_mapped(data))[: len(data)])
    assert backend.get("data/ab/pack") == data
    assert backend.get_range("data/ab/pack", 5 * MiB - 3, 50) == data[5 * MiB - 3 : 5 * MiB + 47]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 3 * MiB), st.integers(0, 4095))
def test_any_length_and_start(tmp_path_factory: pytest.TempPathFactory, n: int, skip: int) -> None:
    data = os.urandom(n)
    buf = _mapped(bytes(skip) + data)
    path = tmp_path_factory.mktemp("any") / "obj"
    assert _write(path, memoryview(buf)[skip : skip + n]) == data
