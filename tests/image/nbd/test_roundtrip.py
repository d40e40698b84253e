"""NBDClient against NBDServer: both ends of strongroom's own implementation."""

from __future__ import annotations

import errno
import random
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from strongroom.errors import NBDError
from strongroom.image.nbd import (
    BASE_ALLOCATION,
    STATE_HOLE,
    STATE_ZERO,
    FileExport,
    Hole,
    MemoryExport,
    NBDClient,
    NBDCommandError,
    NBDServer,
    ReadPiece,
    list_exports_at,
)
from strongroom.image.nbd import protocol as p

from ._support import KiB, MiB, check_contiguous, ranges_with

DIRTY = MemoryExport.DIRTY_CONTEXT


class FailingExport(MemoryExport):
    """Fails reads that touch ``bad`` and every write with ENOSPC."""

    bad = (3 * MiB, 3 * MiB + 1)

    def read(self, offset: int, length: int) -> Sequence[ReadPiece]:
        if offset < self.bad[1] and offset + length > self.bad[0]:
            raise OSError(errno.EIO, "media error in test export")
        return super().read(offset, length)

    def write(self, offset: int, data: memoryview) -> None:
        raise OSError(errno.EDQUOT, "quota exceeded")


@pytest.fixture
def mem() -> MemoryExport:
    return MemoryExport(16 * MiB)


@pytest.fixture
def sock(sockdir: Path, mem: MemoryExport) -> Iterator[Path]:
    path = sockdir / "s.sock"
    exports = {"mem": mem, "ro": MemoryExport(MiB, read_only=True), "bad": FailingExport(8 * MiB)}
    with NBDServer(exports, path):
        yield path


def test_round_trip_with_holes(sock: Path) -> None:
    with NBDClient(sock, "mem", meta_contexts=[BASE_ALLOCATION, DIRTY]) as client:
        assert client.size == 16 * MiB and client.can_multi_conn and client.can_trim
        blob = random.Random(5).randbytes(300 * KiB)
        client.write(1 * MiB + 100, blob)
        client.write(10 * MiB, b"\xff" * 64 * KiB)
        got = client.pread(1 * MiB - 64 * KiB, 512 * KiB)  # hole, data, hole: several chunks
        assert got == bytes(64 * KiB + 100) + blob + bytes(512 * KiB - 64 * KiB - 100 - len(blob))
        extents = list(client.extents(BASE_ALLOCATION))
        check_contiguous(extents, 0, 16 * MiB)
        assert ranges_with(extents, STATE_HOLE, False) == [
            (1 * MiB, 320 * KiB),
            (10 * MiB, 64 * KiB),
        ]
        assert all(e.flags == STATE_HOLE | STATE_ZERO for e in extents if e.flags)
        client.trim(10 * MiB, 64 * KiB)
        client.write_zeroes(1 * MiB, 64 * KiB)  # whole block, may punch
        client.write_zeroes(1 * MiB + 64 * KiB, 64 * KiB, no_hole=True)  # stays allocated
        client.flush()
        extents = list(client.extents(BASE_ALLOCATION))
        assert ranges_with(extents, STATE_HOLE, False) == [(1 * MiB + 64 * KiB, 256 * KiB)]
        assert client.pread(1 * MiB, 128 * KiB) == bytes(128 * KiB)
        dirty = ranges_with(client.extents(DIRTY), 1, True)  # everything touched since creation
        assert dirty == [(1 * MiB, 320 * KiB), (10 * MiB, 64 * KiB)]


def test_simple_replies_with_holes(sock: Path, mem: MemoryExport) -> None:
    mem.write(2 * MiB, memoryview(b"\x42" * 100))
    with NBDClient(sock, "mem", structured=False) as client:
        assert not client.info.structured and not client.can_df
        assert client.pread(2 * MiB - 10, 120) == bytes(10) + b"\x42" * 100 + bytes(10)
        with pytest.raises(NBDCommandError, match="EINVAL") as info:
            client.pread(16 * MiB, 1)
        assert info.value.error == p.EINVAL
        with pytest.raises(NBDError, match="meta contexts"):
            client.block_status(0, 4096)


def test_error_replies_carry_server_message(sock: Path) -> None:
    with NBDClient(sock, "mem") as client:
        with pytest.raises(NBDCommandError, match="beyond the export size") as info:
            client.pread(16 * MiB - 4, 8)  # read past end
        assert info.value.error == p.EINVAL and info.value.command == "READ"
        with pytest.raises(NBDCommandError, match="ENOSPC"):
            client.write(16 * MiB, b"x")
    with NBDClient(sock, "bad") as client:
        with pytest.raises(NBDCommandError, match="EIO: media error in test export"):
            client.pread(3 * MiB - 10, 20)
        assert client.pread(0, 10) == bytes(10)  # the connection survives an error reply
        with pytest.raises(NBDCommandError, match="ENOSPC: quota exceeded"):
            client.write(0, b"abc")  # EDQUOT folds into ENOSPC on the wire


def test_read_only_export(sock: Path) -> None:
    with NBDClient(sock, "ro") as client:
        assert client.read_only and not client.can_trim and not client.can_write_zeroes
        with pytest.raises(NBDError, match="read-only"):
            client.write(0, b"x")
        assert client.pread(0, 4) == bytes(4)


def test_pipelined_and_concurrent_clients(sock: Path, mem: MemoryExport) -> None:
    content = random.Random(9).randbytes(8 * MiB)
    mem.write(0, memoryview(content))
    with NBDClient(sock, "mem", max_in_flight=8) as client:
        buffers = [bytearray(256 * KiB) for _ in range(32)]
        futures = [client.submit_read(i * 256 * KiB, 256 * KiB, b) for i, b in enumerate(buffers)]
        assert all(f.result() == 256 * KiB for f in futures)
        assert b"".join(buffers) == content

    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            with NBDClient(sock, "mem") as own:
                region = 8 * MiB + index * MiB
                data = bytes([index + 1]) * MiB
                own.write(region, data)
                own.flush()
                assert own.pread(region, MiB) == data
                assert own.pread(index * MiB, MiB) == content[index * MiB : (index + 1) * MiB]
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert mem.read(8 * MiB + 5 * MiB, 4) == [b"\x06" * 4]


def test_extents_walk_needs_several_requests(sockdir: Path) -> None:
    big = MemoryExport(2 << 40)  # 2 TiB, sparse; MemoryExport answers at most 256 MiB a call
    for off in (0, 300 * MiB, (1 << 40) + 4 * KiB):
        big.write(off, memoryview(b"z" * 10))
    with (
        NBDServer({"": big}, sockdir / "s.sock"),
        NBDClient(sockdir / "s.sock", meta_contexts=[BASE_ALLOCATION]) as client,
    ):
        extents = list(client.extents(BASE_ALLOCATION, 0, 1 * (1 << 30)))
        check_contiguous(extents, 0, 1 << 30)
        assert ranges_with(extents, STATE_HOLE, False) == [(0, 64 * KiB), (300 * MiB, 64 * KiB)]
        tail = list(client.extents(BASE_ALLOCATION, (1 << 40) - MiB, 2 * MiB))
        assert ranges_with(tail, STATE_HOLE, False) == [(1 << 40, 64 * KiB)]


def test_file_export_holes_and_trim(tmp_path: Path, sockdir: Path) -> None:
    path = tmp_path / "disk.raw"
    with path.open("wb") as f:
        f.truncate(8 * MiB)
        f.seek(2 * MiB)
        f.write(b"\x01" * MiB)
    with (
        FileExport(path, read_only=False) as export,
        NBDServer({"d": export}, sockdir / "s.sock"),
        NBDClient(sockdir / "s.sock", "d", meta_contexts=[BASE_ALLOCATION]) as client,
    ):
        assert export.read(MiB, 2 * MiB) == [Hole(MiB), b"\x01" * MiB]
        data = ranges_with(client.extents(BASE_ALLOCATION), STATE_HOLE, False)
        assert data == [(2 * MiB, MiB)]
        client.trim(2 * MiB, 512 * KiB)
        client.write_zeroes(2 * MiB + 512 * KiB, 256 * KiB, no_hole=True)
        client.flush()
        data = ranges_with(client.extents(BASE_ALLOCATION), STATE_HOLE, False)
        assert data == [(2 * MiB + 512 * KiB, 512 * KiB)]  # trim punched a hole
        assert client.pread(2 * MiB, MiB) == bytes(768 * KiB) + b"\x01" * (256 * KiB)


def test_list_and_bad_names(sock: Path) -> None:
    assert [name for name, _ in list_exports_at(sock)] == ["bad", "mem", "ro"]
    with pytest.raises(NBDError, match=r"'backup-7'.*not found"):
        NBDClient(sock, "backup-7")
    with pytest.raises(NBDError, match="does not offer meta context qemu:dirty-bitmap:x"):
        NBDClient(sock, "mem", meta_contexts=["qemu:dirty-bitmap:x"])


def test_nothing_listening(sockdir: Path) -> None:
    with pytest.raises(NBDError, match="No such file or directory"):
        NBDClient(sockdir / "none.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sockdir / "stale.sock"))
    stale.close()  # the socket file stays, nobody listens
    with pytest.raises(NBDError, match=r"cannot connect .*stale\.sock: Connection refused"):
        NBDClient(sockdir / "stale.sock")


def test_server_stop_breaks_clients(sockdir: Path) -> None:
    server = NBDServer({"": MemoryExport(MiB)}, sockdir / "s.sock").start()
    client = NBDClient(sockdir / "s.sock")
    assert server.connection_count == 1
    server.stop()
    with pytest.raises(NBDError, match="NBD connection"):
        client.pread(0, 10)
    with pytest.raises(NBDError):
        client.pread(0, 10)  # stays broken
    client.close()
    assert not (sockdir / "s.sock").exists()
