"""Big restored files written past the page cache: whatever the runs, holes and alignments, the
file holds exactly the bytes given (direct where the file system allows, buffered otherwise)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.storage.directio import ALIGN, WINDOW, DirectSink, open_direct

# runs of (gap before, length): gaps make holes and unaligned starts, lengths cross blocks and
# the window
_runs = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 1, 511, ALIGN - 1, ALIGN, 3 * ALIGN + 7]),
        st.integers(1, 3 * ALIGN) | st.sampled_from([WINDOW - 1, WINDOW + ALIGN + 5]),
    ),
    min_size=1,
    max_size=8,
)


@pytest.fixture(scope="module")
def disk_dir() -> Iterator[Path]:
    """A folder on a disk file system (Debian's /var/tmp; /tmp may be a tmpfs)."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as d:
        yield Path(d)


def _write(path: Path, runs: list[tuple[int, int]], direct: bool, split: int) -> bytes:
    """Write the runs through a sink (each run in pieces of ``split`` bytes); the expected
    content."""
    expected = bytearray()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    direct_fd = open_direct(fd) if direct else -1
    try:
        sink = DirectSink(fd, direct_fd)
        for n, (gap, length) in enumerate(runs):
            expected += bytes(gap)
            data = bytes([n % 250 + 1]) * length
            for at in range(0, length, split):
                sink.write(memoryview(data)[at : at + split], len(expected) + at)
            expected += data
        sink.flush()
        os.ftruncate(fd, len(expected))
    finally:
        if direct_fd >= 0:
            os.close(direct_fd)
        os.close(fd)
    return bytes(expected)


@given(_runs, st.booleans(), st.sampled_from([1000, ALIGN, 1 << 20]))
@settings(max_examples=40, deadline=None)
def test_the_file_holds_exactly_what_was_written(
    disk_dir: Path, runs: list[tuple[int, int]], direct: bool, split: int
) -> None:
    path = disk_dir / "f"
    expected = _write(path, runs, direct, split)
    assert path.read_bytes() == expected


def test_a_disk_file_system_takes_the_direct_path(disk_dir: Path) -> None:
    """On a disk file system the body goes direct: the file's pages are not in the cache
    afterwards (mincore through mmap), while a buffered write leaves them there."""
    path = disk_dir / "g"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    direct_fd = open_direct(fd)
    os.close(fd)
    if direct_fd < 0:
        pytest.fail("/var/tmp refused O_DIRECT: the direct path is untested here")
    os.close(direct_fd)
    _write(path, [(0, 2 * WINDOW)], True, 1 << 20)
    assert _cached_pages(path) == 0
    _write(path, [(0, 2 * WINDOW)], False, 1 << 20)
    assert _cached_pages(path) >= WINDOW // ALIGN  # (fincore sees cached pages)


def _cached_pages(path: Path) -> int:
    argv = ["fincore", "--noheadings", "--output", "PAGES", str(path)]
    return int(subprocess.run(argv, capture_output=True, check=True, text=True).stdout)
