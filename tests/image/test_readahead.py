"""NBD disks are read ahead: a set number of READs of a set size in flight, DF set, every
chunk handed over exactly once with the right bytes, and errors stop the reads (issue 19)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from strongroom.errors import ImageError
from strongroom.image import backup as image_backup
from strongroom.image.disks import NBDDisk, open_disk
from strongroom.image.nbd import client as nbd_client
from strongroom.image.nbd import protocol
from strongroom.image.readahead import runs
from strongroom.image.scan import DEFAULT_SPAN, chunk_indexes, scan

from ._vm import MiB, cli, run

CHUNK = MiB


@pytest.fixture
def qcow2(tmp_path: Path) -> tuple[Path, bytes]:
    """A 24 MiB qcow2: 16 MiB of data in two runs around a 4 MiB hole, and its content."""
    data = bytearray(24 * MiB)
    data[0 : 10 * MiB] = os.urandom(10 * MiB)
    data[14 * MiB : 20 * MiB] = os.urandom(6 * MiB)
    raw = tmp_path / "d.raw"
    raw.write_bytes(data)
    image = tmp_path / "d.qcow2"
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, image)
    return image, bytes(data)


class Watched:
    """An NBD disk whose READs are counted as the scan submits and waits for them."""

    def __init__(self, disk: NBDDisk) -> None:
        self.disk = disk
        self.size = disk.size
        self.lock = threading.Lock()
        self.outstanding = 0
        self.most = 0
        self.lengths: list[int] = []

    @property
    def max_request(self) -> int:
        return self.disk.max_request

    def submit_read(self, offset: int, view: memoryview) -> Future[int]:
        with self.lock:
            self.outstanding += 1
            self.most = max(self.most, self.outstanding)
            self.lengths.append(len(view))
        return self.disk.submit_read(offset, view)

    def wait_read(self, future: Future[int]) -> None:
        self.disk.wait_read(future)
        with self.lock:
            self.outstanding -= 1

    def read_into(self, offset: int, view: memoryview) -> None:
        self.disk.read_into(offset, view)


class SmallRequests(Watched):
    """A server that takes less than a chunk per request."""

    @property
    def max_request(self) -> int:
        return CHUNK // 2


def _scan(watched: Watched, span: int, depth: int, slow: float = 0.0) -> dict[int, str]:
    seen: dict[int, str] = {}
    lock = threading.Lock()

    def handle(index: int, view: memoryview) -> None:
        time.sleep(slow)  # slow consumers: the reads queue up to the depth
        with lock:
            assert index not in seen
            seen[index] = hashlib.sha256(view).hexdigest()

    indexes = list(chunk_indexes(watched.disk.data_extents(), CHUNK))
    scan(watched, CHUNK, indexes, handle, workers=2, span=span, depth=depth)  # type: ignore[arg-type]
    return seen


def _want(content: bytes) -> dict[int, str]:
    return {
        i: hashlib.sha256(content[i * CHUNK : (i + 1) * CHUNK]).hexdigest()
        for i in [*range(10), *range(14, 20)]
    }


@pytest.mark.parametrize(("span", "depth"), [(2 * MiB, 3), (4 * MiB, 1), (MiB, 5)])
def test_request_size_and_depth_are_honoured(
    qcow2: tuple[Path, bytes], span: int, depth: int
) -> None:
    image, content = qcow2
    disk = open_disk(image, "qcow2")
    assert isinstance(disk, NBDDisk)
    try:
        watched = Watched(disk)
        assert _scan(watched, span, depth, slow=0.02) == _want(content)
        assert watched.most == depth
        assert max(watched.lengths) == span and sum(watched.lengths) == 16 * MiB
        # runs never cross the hole: 10 MiB and 6 MiB of data
        assert len(watched.lengths) == -(-10 * MiB // span) + -(-6 * MiB // span)
        counts = disk.read_counts
        assert counts.requests == len(watched.lengths) and counts.largest == span
        assert counts.max_in_flight <= depth
    finally:
        disk.close()


def test_reads_ask_for_one_data_chunk(
    qcow2: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DF: QEMU then skips the block-status query it makes per READ to send holes."""
    flags: list[int] = []
    submit = nbd_client.NBDClient._submit

    def spy(
        self: nbd_client.NBDClient, command: int, fl: int, *args: object, **kw: object
    ) -> object:
        if command == protocol.CMD_READ:
            flags.append(fl)
        return submit(self, command, fl, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(nbd_client.NBDClient, "_submit", spy)
    image, content = qcow2
    disk = open_disk(image, "qcow2")
    try:
        assert disk.read_counts.requests == 0  # type: ignore[attr-defined]
        assert _scan(Watched(disk), 4 * MiB, 4) == _want(content)  # type: ignore[arg-type]
    finally:
        disk.close()
    assert flags and all(f == protocol.CMD_FLAG_DF for f in flags)


def test_a_server_taking_less_than_a_chunk_is_read_chunk_by_chunk(
    qcow2: tuple[Path, bytes],
) -> None:
    image, content = qcow2
    disk = open_disk(image, "qcow2")
    assert isinstance(disk, NBDDisk)
    try:
        watched = SmallRequests(disk)
        assert _scan(watched, 4 * MiB, 4) == _want(content)
        assert not watched.lengths  # no read-ahead: read_into splits each chunk
    finally:
        disk.close()


def test_a_failing_handler_stops_the_reads(qcow2: tuple[Path, bytes]) -> None:
    image, _ = qcow2
    disk = open_disk(image, "qcow2")
    assert isinstance(disk, NBDDisk)
    handled: list[int] = []

    def handle(index: int, view: memoryview) -> None:
        handled.append(index)
        if index == 2:
            raise ImageError("stop here")

    try:
        with pytest.raises(ImageError, match="stop here"):
            scan(disk, CHUNK, list(range(24)), handle, workers=2, span=MiB, depth=2)
        assert len(handled) < 24
        assert disk.read_counts.requests < 24
        # every READ was waited for: the connection still serves
        buf = memoryview(bytearray(MiB))
        disk.read_into(0, buf)
    finally:
        disk.close()


def _resident() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_read_ahead_buffers_cost_only_the_pages_read(qcow2: tuple[Path, bytes]) -> None:
    """An incremental reads a few scattered chunks: its ``depth + workers`` windows (of up
    to 32 MiB) must not be zero-filled up front (0.05 s of a live VM's incremental)."""
    image, content = qcow2
    disk = open_disk(image, "qcow2")
    assert isinstance(disk, NBDDisk)
    grown: list[int] = []
    before = _resident()

    def handle(index: int, view: memoryview) -> None:
        assert bytes(view) == content[index * CHUNK : (index + 1) * CHUNK]
        grown.append(_resident() - before)

    try:
        span = disk.max_request
        assert span >= 16 * MiB  # 8 windows of it would be 128 MiB or more if touched
        scan(disk, CHUNK, [3], handle, workers=2, span=span, depth=6)
    finally:
        disk.close()
    assert len(grown) == 1 and grown[0] < 12 * MiB


def test_runs_group_adjacent_chunks_up_to_the_span() -> None:
    def listed(indexes: list[int], span: int, end: int) -> list[tuple[int, int, int, int]]:
        return list(runs(iter(indexes), MiB, span, end))

    assert listed([0, 1, 2, 3, 4, 7, 8], 2 * MiB, 9 * MiB) == [
        (0, 2, 0, 2 * MiB),
        (2, 2, 2 * MiB, 2 * MiB),
        (4, 1, 4 * MiB, MiB),
        (7, 2, 7 * MiB, 2 * MiB),
    ]
    assert listed([3, 4], 4 * MiB, 4 * MiB + 100) == [(3, 2, 3 * MiB, MiB + 100)]
    assert listed([5], MiB // 2, 6 * MiB) == [(5, 1, 5 * MiB, MiB)]  # at least one chunk
    assert listed([], MiB, MiB) == []


def test_a_backup_reads_nbd_disks_in_large_requests(
    vault_env: Path, qcow2: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[NBDDisk] = []
    real_open = image_backup.open_disk  # type: ignore[attr-defined]

    def spy(*args: object, **kwargs: object) -> object:
        disk = real_open(*args, **kwargs)  # type: ignore[arg-type]
        opened.append(disk)  # type: ignore[arg-type]
        return disk

    monkeypatch.setattr(image_backup, "open_disk", spy)
    image, _ = qcow2
    result = cli("backup", "disk", image, "--json")
    assert result.code == 0, result.err
    (disk,) = opened
    counts = disk.read_counts
    assert counts.bytes == result.json()["bytes_read"] == 16 * MiB
    assert counts.largest == DEFAULT_SPAN
    assert counts.requests == 5  # 10 MiB and 6 MiB runs in requests of up to 4 MiB
