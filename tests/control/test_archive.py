"""The agent's streamed downloads: a folder as a zip or tar goes out in pieces over one
chunked POST to a real HTTP server, in bounded memory, with every file's bytes intact."""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import tarfile
import threading
import tracemalloc
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from strongroom.agent.archive import PIECE, Upload, send_archive, send_file
from strongroom.agent.restorework import lookup
from strongroom.files import BackupOptions, backup_files
from strongroom.vault import Vault

MiB = 1 << 20


class _Sink(BaseHTTPRequestHandler):
    """Reads a chunked body to a file, noting the largest chunk."""

    out: Path
    largest: list[int]

    def do_POST(self) -> None:
        with open(self.out, "wb") as f:
            while True:
                line = self.rfile.readline()
                if not line:
                    return  # the agent broke the upload off
                size = int(line.strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                self.largest[0] = max(self.largest[0], size)
                f.write(self.rfile.read(size))
                self.rfile.readline()
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[int, Path, list[int]]]:
    out, largest = tmp_path / "received", [0]
    handler = type("Sink", (_Sink,), {"out": out, "largest": largest})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port, out, largest
    server.shutdown()


def _upload(port: int) -> Upload:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    return Upload(conn, "/data", {"Content-Type": "application/zip"})


def _point(local_vault: Vault, src: Path) -> str:
    (src / "sub").mkdir(parents=True)
    for i in range(6):
        (src / "sub" / f"f{i}.bin").write_bytes(os.urandom(4 * MiB + i))
    with open(src / "sub" / "sparse", "wb") as f:  # holes come back as zeros
        f.write(b"head")
        f.seek(3 * MiB)
        f.write(b"tail")
    return backup_files(local_vault, BackupOptions([str(src)], source="s")).point_id


def test_a_folder_streams_as_zip_and_tar_in_bounded_memory(
    local_vault: Vault, tmp_path: Path, sink: tuple[int, Path, list[int]]
) -> None:
    port, out, largest = sink
    src = tmp_path / "src"
    p = local_vault.resolve_point(_point(local_vault, src))
    node, where, trees = lookup(local_vault, p, f"{src}/sub")
    want = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in (src / "sub").iterdir()}
    for fmt in ("zip", "tar"):
        tracemalloc.start()
        up = _upload(port)
        send_archive(local_vault, trees, node, where, fmt, up)
        up.finish()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        # 27 MiB of content went out; far less was held at once
        assert peak < 14 * MiB, peak
        assert largest[0] <= PIECE
        data = out.read_bytes()
        if fmt == "zip":
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                got = {n.split("/")[-1]: hashlib.sha256(zf.read(n)).hexdigest()
                       for n in zf.namelist() if not n.endswith("/")}  # fmt: skip
        else:
            with tarfile.open(fileobj=io.BytesIO(data)) as tf:
                got = {}
                for m in tf.getmembers():
                    member = tf.extractfile(m) if m.isfile() else None
                    if member is not None:
                        got[m.name.split("/")[-1]] = hashlib.sha256(member.read()).hexdigest()
        assert got == want, fmt


def test_one_file_and_a_refused_folder(
    local_vault: Vault, tmp_path: Path, sink: tuple[int, Path, list[int]]
) -> None:
    port, out, _ = sink
    src = tmp_path / "src"
    p = local_vault.resolve_point(_point(local_vault, src))
    node, _, _ = lookup(local_vault, p, f"{src}/sub/sparse")
    up = _upload(port)
    send_file(local_vault, node, up)
    up.finish()
    assert out.read_bytes() == (src / "sub" / "sparse").read_bytes()
    folder, _, _ = lookup(local_vault, p, f"{src}/sub")
    with pytest.raises(Exception, match="zip or a tar"):
        send_file(local_vault, folder, _upload(port))
