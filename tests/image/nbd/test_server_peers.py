"""NBDServer against real clients: qemu-img, qemu-io, nbdinfo and nbdcopy."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from strongroom.image.nbd import FileExport, MemoryExport, NBDServer

from ._support import KiB, MiB, nbd_uri, run

SIZE = 64 * MiB
DATA = [(1 * MiB, 1 * MiB), (20 * MiB, 512 * KiB), (40 * MiB + 4 * KiB, 8 * KiB)]


@dataclass
class Served:
    server: NBDServer
    sock: Path
    source: Path  # read-only export "disk"
    target: Path  # writable export "target", same size, initially sparse and empty

    def uri(self, export: str) -> str:
        return nbd_uri(self.sock, export)


def make_sparse(path: Path, seed: int) -> bytes:
    """A sparse raw file with random data at DATA; returns its full content."""
    rng = random.Random(seed)
    content = bytearray(SIZE)
    with path.open("wb") as f:
        f.truncate(SIZE)
        for off, n in DATA:
            chunk = rng.randbytes(n)
            f.seek(off)
            f.write(chunk)
            content[off : off + n] = chunk
    return bytes(content)


@pytest.fixture
def served(tmp_path: Path, sockdir: Path) -> Iterator[Served]:
    source, target = tmp_path / "source.raw", tmp_path / "target.raw"
    make_sparse(source, 1)
    with target.open("wb") as f:
        f.truncate(SIZE)
    sock = sockdir / "s.sock"
    with (
        FileExport(source) as disk,
        FileExport(target, read_only=False) as writable,
        NBDServer({"disk": disk, "target": writable, "mem": MemoryExport(MiB)}, sock) as server,
    ):
        yield Served(server, sock, source, target)


def test_qemu_img_convert_info_compare(served: Served, tmp_path: Path) -> None:
    info = json.loads(run("qemu-img", "info", "--output=json", served.uri("disk")))
    assert info["virtual-size"] == SIZE
    out = tmp_path / "out.raw"
    run("qemu-img", "convert", "-f", "raw", "-O", "raw", served.uri("disk"), out)
    assert out.read_bytes() == served.source.read_bytes()
    run("qemu-img", "compare", "-f", "raw", "-F", "raw", served.uri("disk"), served.source)
    # convert skips holes it learns about from block status: the copy stays sparse.
    assert os.stat(out).st_blocks * 512 < 4 * MiB


def test_nbdinfo_list_and_map(served: Served) -> None:
    listing = run("nbdinfo", "--list", served.uri(""))
    for name in ("disk", "target", "mem"):
        assert f'export="{name}"' in listing
    assert "base:allocation" in listing and "x-strongroom:dirty" in listing
    rows = [line.split() for line in run("nbdinfo", "--map", served.uri("disk")).splitlines()]
    extents = [(int(off), int(n), int(kind)) for off, n, kind, *_ in rows]
    assert [(off, n) for off, n, kind in extents if kind == 0] == DATA
    assert all(kind == 3 for _, _, kind in extents if kind)  # holes: hole + zero
    assert sum(n for _, n, _ in extents) == SIZE


def test_qemu_img_map_over_tcp(tmp_path: Path) -> None:
    source = tmp_path / "source.raw"
    make_sparse(source, 2)
    with FileExport(source) as disk, NBDServer({"disk": disk}, tcp=("127.0.0.1", 0)) as server:
        assert server.tcp_address is not None
        host, port = server.tcp_address
        uri = f"nbd://{host}:{port}/disk"
        mapped = json.loads(run("qemu-img", "map", "--output=json", "-f", "raw", uri))
        assert [(m["start"], m["length"]) for m in mapped if m["data"]] == DATA
        run("qemu-img", "compare", "-f", "raw", "-F", "raw", uri, source)


def test_nbdcopy_from_and_to_server(served: Served, tmp_path: Path) -> None:
    out = tmp_path / "copy.raw"
    run("nbdcopy", served.uri("disk"), out)
    assert out.read_bytes() == served.source.read_bytes()
    upload = tmp_path / "upload.raw"
    content = make_sparse(upload, 3)
    run("nbdcopy", "--connections=4", "--requests=16", upload, served.uri("target"))
    assert served.target.read_bytes() == content


def test_qemu_io_writes_land_in_backing_file(served: Served) -> None:
    run(
        "qemu-io", "-f", "raw",
        "-c", "write -P 0x77 4M 64k",
        "-c", "write -P 0x66 6M 1M",
        "-c", "write -z 6M 512k",
        "-c", "discard 6M 64k",  # inside the zeroed part: contents stay zero either way
        "-c", "flush",
        served.uri("target"),
    )  # fmt: skip
    data = served.target.read_bytes()
    assert data[4 * MiB : 4 * MiB + 64 * KiB] == b"\x77" * (64 * KiB)
    assert data[6 * MiB : 6 * MiB + 512 * KiB] == bytes(512 * KiB)
    assert data[6 * MiB + 512 * KiB : 7 * MiB] == b"\x66" * (512 * KiB)
    assert data.count(0) == SIZE - 64 * KiB - 512 * KiB
    run("qemu-io", "-r", "-f", "raw", "-c", "read -P 0x77 4M 64k", served.uri("target"))


def test_qemu_io_reads_verify_pattern(served: Served) -> None:
    source = served.source.read_bytes()
    off, _ = DATA[0]
    byte = source[off]
    run("qemu-io", "-r", "-f", "raw", "-c", f"read -P {byte} {off} 1", served.uri("disk"))
    run("qemu-io", "-r", "-f", "raw", "-c", "read -P 0 30M 1M", served.uri("disk"))


def test_unknown_export_rejected_by_peers(served: Served) -> None:
    with pytest.raises(AssertionError, match=r"opt_go.*export: nope"):
        run("nbdinfo", served.uri("nope"))
    with pytest.raises(AssertionError, match="export 'nope' not found"):
        run("qemu-img", "info", served.uri("nope"))  # qemu shows the server's message
