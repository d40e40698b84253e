"""NBDClient against a real qemu-nbd: reads, block status, dirty bitmaps, pipelining, writes."""

from __future__ import annotations

import os
import random
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from strongroom.errors import ImageError, NBDError
from strongroom.image.nbd import (
    BASE_ALLOCATION,
    STATE_DIRTY,
    STATE_HOLE,
    STATE_ZERO,
    NBDClient,
    NBDCommandError,
    QemuNBD,
)
from strongroom.image.nbd import protocol as p

from ._support import KiB, MiB, check_contiguous, qemu_io, ranges_with, run, write_pattern

SIZE = 64 * MiB
# (offset, length, byte): one write crosses the 32 MiB boundary of a maximum-size request.
LAYOUT = [(1 * MiB, 64 * KiB, 0xAB), (10 * MiB, 3 * MiB, 0xCD), (33 * MiB - 4 * KiB, 8 * KiB, 0x5A)]


def make_image(path: Path, fmt: str) -> bytearray:
    run("qemu-img", "create", "-f", fmt, path, str(SIZE))
    qemu_io(path, fmt, *(f"write -P {byte:#x} {off} {n}" for off, n, byte in LAYOUT))
    expected = bytearray(SIZE)
    for off, n, byte in LAYOUT:
        write_pattern(expected, off, n, byte)
    return expected


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_reads_match_what_qemu_io_wrote(tmp_path: Path, fmt: str) -> None:
    image = tmp_path / f"disk.{fmt}"
    expected = make_image(image, fmt)
    with QemuNBD(image, fmt=fmt) as server, server.connect() as client:
        assert client.size == SIZE
        assert client.read_only and client.info.structured
        assert client.block_size.maximum == 32 * MiB
        whole = bytearray(SIZE)
        client.read_into(0, whole)  # split into two 32 MiB requests, holes arrive as chunks
        assert whole == expected
        for off, n in [(1 * MiB + 7, 100), (33 * MiB - 5000, 9000), (SIZE - 10, 10)]:
            assert client.pread(off, n) == expected[off : off + n]


def test_block_status_qcow2_reports_clusters(tmp_path: Path) -> None:
    image = tmp_path / "disk.qcow2"
    make_image(image, "qcow2")
    with QemuNBD(image, fmt="qcow2") as server, server.connect() as client:
        extents = list(client.extents(BASE_ALLOCATION))
        check_contiguous(extents, 0, SIZE)
        cluster = 64 * KiB  # qcow2 allocation is per cluster
        assert ranges_with(extents, STATE_HOLE, False) == [
            (1 * MiB, cluster),
            (10 * MiB, 3 * MiB),
            (33 * MiB - cluster, 2 * cluster),
        ]
        for extent in extents:  # unallocated clusters of a qcow2 without backing read as zero
            if extent.flags & STATE_HOLE:
                assert extent.flags & STATE_ZERO


def test_block_status_raw_sub_range_and_req_one(tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    make_image(image, "raw")
    with QemuNBD(image) as server, server.connect() as client:
        extents = list(client.extents(BASE_ALLOCATION))
        check_contiguous(extents, 0, SIZE)
        # qemu-img create allocates the first 4 KiB of a raw file (alignment probing).
        data = [(0, 4 * KiB)] + [(off, n) for off, n, _ in LAYOUT]
        assert ranges_with(extents, STATE_HOLE, False) == data
        part = list(client.extents(BASE_ALLOCATION, 10 * MiB - 4 * KiB, 8 * KiB))
        check_contiguous(part, 10 * MiB - 4 * KiB, 10 * MiB + 4 * KiB)
        assert [(e.length, bool(e.flags & STATE_HOLE)) for e in part] == [
            (4096, True),
            (4096, False),
        ]
        one = client.block_status(2 * MiB, 20 * MiB, req_one=True)[BASE_ALLOCATION]
        assert len(one) == 1 and one[0].offset == 2 * MiB and one[0].flags & STATE_HOLE


def test_dirty_bitmap_extents_match_writes(tmp_path: Path) -> None:
    image = tmp_path / "disk.qcow2"
    run("qemu-img", "create", "-f", "qcow2", image, str(SIZE))
    qemu_io(image, "qcow2", "write -P 0x11 0 64k")  # before the bitmap: allocated, not dirty
    run("qemu-img", "bitmap", "--add", "--enable", image, "b0")
    qemu_io(image, "qcow2", "write -P 0x22 5M 128k", "write -P 0x33 40M 64k")
    context = "qemu:dirty-bitmap:b0"
    with QemuNBD(image, fmt="qcow2", bitmap="b0") as server, server.connect() as client:
        assert set(client.meta_contexts) == {BASE_ALLOCATION, context}
        dirty = list(client.extents(context))
        check_contiguous(dirty, 0, SIZE)
        assert ranges_with(dirty, STATE_DIRTY, True) == [(5 * MiB, 128 * KiB), (40 * MiB, 64 * KiB)]
        allocated = ranges_with(client.extents(BASE_ALLOCATION), STATE_HOLE, False)
        assert allocated == [(0, 64 * KiB), (5 * MiB, 128 * KiB), (40 * MiB, 64 * KiB)]
        assert client.pread(5 * MiB, 4) == b"\x22" * 4


def test_unknown_bitmap_context_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    run("qemu-img", "create", "-f", "raw", image, "1M")
    with QemuNBD(image) as server, pytest.raises(NBDError, match="qemu:dirty-bitmap:nope"):
        server.connect(["qemu:dirty-bitmap:nope"])


def test_pipelined_reads_many_in_flight(tmp_path: Path) -> None:
    image = tmp_path / "random.raw"
    content = random.Random(7).randbytes(32 * MiB)
    image.write_bytes(content)
    with QemuNBD(image) as server, server.connect(max_in_flight=8) as client:
        order = list(range(32))
        random.Random(1).shuffle(order)
        buffers = [bytearray(MiB) for _ in order]
        futures: list[Future[int]] = [
            client.submit_read(i * MiB, MiB, buffers[i])
            for i in order  # 8 in flight at once
        ]
        assert [f.result() for f in futures] == [MiB] * 32
        for i, buf in enumerate(buffers):
            assert buf == content[i * MiB : (i + 1) * MiB]

        errors: list[BaseException] = []

        def reader(seed: int) -> None:  # several threads share one pipelined connection
            rng = random.Random(seed)
            buf = bytearray(256 * KiB)
            try:
                for _ in range(40):
                    off = rng.randrange(0, len(content) - len(buf))
                    client.read_into(off, buf)
                    assert buf == content[off : off + len(buf)]
            except BaseException as exc:  # reported in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors


def test_simple_replies_without_structured_negotiation(tmp_path: Path) -> None:
    image = tmp_path / "disk.qcow2"
    expected = make_image(image, "qcow2")
    with (
        QemuNBD(image, fmt="qcow2") as server,
        NBDClient(server.socket_path, structured=False) as client,
    ):
        assert not client.info.structured
        assert client.pread(0, 16 * MiB) == expected[: 16 * MiB]
        with pytest.raises(NBDCommandError) as info:
            client.pread(SIZE, 512)
        assert info.value.error == p.EINVAL
        assert client.pread(1 * MiB, 8) == b"\xab" * 8  # still usable after the error


def test_read_past_end_reports_server_error(tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    run("qemu-img", "create", "-f", "raw", image, "1M")
    with QemuNBD(image) as server, server.connect() as client:
        with pytest.raises(NBDCommandError, match="EINVAL") as info:
            client.pread(MiB - 512, 1024)
        assert info.value.command == "READ"
        with pytest.raises(NBDError, match="read-only"):
            client.write(0, b"x")


def test_writes_zeroes_trim_flush_through_qemu_nbd(tmp_path: Path) -> None:
    image = tmp_path / "target.qcow2"
    run("qemu-img", "create", "-f", "qcow2", image, str(SIZE))
    reference = bytearray(SIZE)
    rng = random.Random(3)
    with QemuNBD(image, fmt="qcow2", writable=True) as server, server.connect() as client:
        assert not client.read_only and client.can_trim and client.can_write_zeroes
        assert client.can_flush
        blob = rng.randbytes(40 * MiB)  # larger than one request: split and pipelined
        client.write(3 * MiB + 123, blob)
        reference[3 * MiB + 123 : 3 * MiB + 123 + len(blob)] = blob
        client.write(50 * MiB, b"\x01" * 4096, fua=True)
        write_pattern(reference, 50 * MiB, 4096, 1)
        client.write_zeroes(4 * MiB, 2 * MiB)
        client.write_zeroes(8 * MiB, 1 * MiB, no_hole=True)
        for off, n in [(4 * MiB, 2 * MiB), (8 * MiB, MiB)]:
            reference[off : off + n] = bytes(n)
        client.trim(20 * MiB, 4 * MiB)  # qcow2 with discard=unmap: trimmed clusters read zero
        reference[20 * MiB : 24 * MiB] = bytes(4 * MiB)
        if client.can_fast_zero:
            try:
                client.write_zeroes(30 * MiB, MiB, fast=True)
                reference[30 * MiB : 31 * MiB] = bytes(MiB)
            except NBDCommandError as exc:  # "not faster than writing" is a valid answer
                assert exc.error == p.ENOTSUP
        client.flush()
        assert client.pread(4 * MiB - 10, 20) == bytes(reference[4 * MiB - 10 : 4 * MiB + 10])
        holes = ranges_with(client.extents(BASE_ALLOCATION), STATE_ZERO, True)
        assert (20 * MiB, 4 * MiB) in holes or any(
            off <= 20 * MiB and off + n >= 24 * MiB for off, n in holes
        )
    ref = tmp_path / "reference.raw"
    ref.write_bytes(reference)
    run("qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, ref)


def test_connect_nothing_listening(tmp_path: Path) -> None:
    with pytest.raises(NBDError, match="cannot connect to NBD server at unix socket"):
        NBDClient(tmp_path / "absent.sock")
    with pytest.raises(NBDError, match=r"cannot connect .* tcp 127\.0\.0\.1:1"):
        NBDClient(("127.0.0.1", 1))


def test_unknown_export_is_named(tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    run("qemu-img", "create", "-f", "raw", image, "1M")
    with QemuNBD(image) as server, pytest.raises(NBDError, match="'backup-42'"):
        NBDClient(server.socket_path, "backup-42")


def test_qemu_runner_private_folder_and_cleanup(tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    run("qemu-img", "create", "-f", "raw", image, "1M")
    server = QemuNBD(image).start()
    folder = server.socket_path.parent
    try:
        assert folder.stat().st_mode & 0o777 == 0o700
        with server.connect() as a, server.connect() as b:  # --shared allows several clients
            assert a.pread(0, 4) == b.pread(0, 4) == bytes(4)
    finally:
        server.stop()
    assert not folder.exists()


def test_qemu_runner_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "not-qcow2.img"
    bad.write_bytes(b"garbage" * 100)
    with pytest.raises(ImageError, match="qemu-nbd exited"):
        QemuNBD(bad, fmt="qcow2").start()
    with pytest.raises(ImageError, match="image not found"):
        QemuNBD(tmp_path / "missing.raw").start()
    monkeypatch.setenv("PATH", os.fspath(tmp_path))
    with pytest.raises(ImageError, match=r"qemu-nbd not found: install it with `apt-get install"):
        QemuNBD(bad).start()
