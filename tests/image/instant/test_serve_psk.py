"""``strongroom serve --listen --tls-psk FILE`` against qemu-img (tls-creds-psk, TLS 1.3 and
1.2), nbdinfo and nbdcopy (libnbd's tls-psk-file); wrong keys, unknown users and plain clients
are refused; bad key files are one-line errors."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from strongroom.image.instant.tlspsk import PSKContext
from strongroom.image.nbd.exports import MemoryExport
from strongroom.image.nbd.server import NBDServer
from tests.image._vm import cli

from ._serve import serving
from .conftest import Served

MiB = 1 << 20
TLS12_ONLY = "NORMAL:-VERS-TLS1.3"


def _keys_dir(root: Path, **users: bytes) -> Path:
    """A folder with ``keys.psk`` (qemu's tls-creds-psk reads that name), as psktool writes."""
    root.mkdir(parents=True)
    (root / "keys.psk").write_text("".join(f"{u}:{k.hex()}\n" for u, k in users.items()))
    return root


@pytest.fixture(scope="module")
def keys() -> dict[str, bytes]:
    return {"alice": os.urandom(32), "bob": os.urandom(16)}


@pytest.fixture(scope="module")
def server_keys(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, bytes]) -> Path:
    return _keys_dir(tmp_path_factory.mktemp("psk") / "server", **keys) / "keys.psk"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False)


def _qemu(uri: str, creds: Path, user: str, *, priority: str | None = None,
          convert_to: Path | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    host, port = uri.split("//")[1].split("/", maxsplit=1)[0].rsplit(":", 1)
    export = uri.rsplit("/", 1)[1]
    obj = f"tls-creds-psk,id=tls0,endpoint=client,dir={creds},username={user}"
    if priority is not None:
        obj += f",priority={priority}"
    opts = f"driver=nbd,host={host},port={port},export={export},tls-creds=tls0"
    if convert_to is None:
        return _run("qemu-img", "info", "--output=json", "--object", obj, "--image-opts", opts)
    return _run("qemu-img", "convert", "-O", "raw", "--object", obj, "--image-opts", opts,
                str(convert_to))  # fmt: skip


def _libnbd(uri: str, user: str, keyfile: Path) -> str:
    """libnbd's URI: the PSK username is the URI's user part."""
    return uri.replace("nbds://", f"nbds://{user}@") + f"?tls-psk-file={keyfile}"


def test_psk_with_real_clients(
    served: Served, server_keys: Path, keys: dict[str, bytes], tmp_path: Path
) -> None:
    with serving(served.vault, served.point, "--listen", "127.0.0.1:0",
                 "--tls-psk", server_keys) as uris:  # fmt: skip
        assert uris["vda"].startswith("nbds://127.0.0.1:")
        creds = server_keys.parent
        info = _qemu(uris["vda"], creds, "alice")
        assert info.returncode == 0, info.stderr
        assert f'"virtual-size": {128 * MiB}' in info.stdout
        tls12 = _qemu(uris["vdb"], creds, "bob", priority=TLS12_ONLY)  # TLS 1.2 PSK suites
        assert tls12.returncode == 0, tls12.stderr
        out = tmp_path / "vda.raw"
        convert = _qemu(uris["vda"], creds, "alice", convert_to=out)
        assert convert.returncode == 0, convert.stderr
        assert out.read_bytes() == served.restored["vda"].read_bytes()
        listing = _run("nbdinfo", "--list", _libnbd(uris["vda"], "bob", server_keys))
        assert listing.returncode == 0 and "vdb" in listing.stdout, listing.stderr
        copied = tmp_path / "vdb.raw"
        copy = _run("nbdcopy", _libnbd(uris["vdb"], "alice", server_keys), str(copied))
        assert copy.returncode == 0, copy.stderr
        assert copied.read_bytes() == served.restored["vdb"].read_bytes()


def test_psk_refuses_wrong_key_unknown_user_and_plain(
    served: Served, server_keys: Path, keys: dict[str, bytes], tmp_path: Path
) -> None:
    wrong = _keys_dir(tmp_path / "wrong", alice=os.urandom(32))
    stranger = _keys_dir(tmp_path / "stranger", carol=keys["alice"])  # a known key, no user
    with serving(served.vault, served.point, "--listen", "127.0.0.1:0",
                 "--tls-psk", server_keys) as uris:  # fmt: skip
        uri = uris["vda"]
        assert _qemu(uri, wrong, "alice").returncode != 0
        assert _qemu(uri, wrong, "alice", priority=TLS12_ONLY).returncode != 0
        assert _qemu(uri, stranger, "carol").returncode != 0
        assert _qemu(uri, stranger, "carol", priority=TLS12_ONLY).returncode != 0
        for user, folder in (("alice", wrong), ("carol", stranger)):
            bad = _run("nbdinfo", "--list", _libnbd(uri, user, folder / "keys.psk"))
            assert bad.returncode != 0 and "vdb" not in bad.stdout
        plain = _run("nbdinfo", "--list", uri.replace("nbds://", "nbd://"))
        assert plain.returncode != 0 and "vda" not in plain.stdout
        # The server is still fine after all those refusals.
        assert _qemu(uri, server_keys.parent, "alice").returncode == 0


def test_stop_drops_a_connected_psk_client(keys: dict[str, bytes], tmp_path: Path) -> None:
    """A client in the middle of a TLS-PSK session is cut off at stop (its next read fails)."""
    creds = _keys_dir(tmp_path / "c", alice=keys["alice"])
    server = NBDServer({"m": MemoryExport(MiB)}, tcp=("127.0.0.1", 0), tls=PSKContext(keys))
    server.start()
    assert server.tcp_address is not None
    port = server.tcp_address[1]
    opts = f"driver=nbd,host=127.0.0.1,port={port},export=m,tls-creds=tls0"
    obj = f"tls-creds-psk,id=tls0,endpoint=client,dir={creds},username=alice"
    qemu_io = subprocess.Popen(["qemu-io", "--object", obj, "--image-opts", opts],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        assert qemu_io.stdin is not None and qemu_io.stdout is not None
        qemu_io.stdin.write("read 0 4096\n")
        qemu_io.stdin.flush()
        assert "read 4096/4096 bytes" in qemu_io.stdout.readline()
        assert server.connection_count == 1
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 5 and server.connection_count == 0
        out, _ = qemu_io.communicate("read 0 4096\nquit\n", timeout=30)
        assert "read failed" in out
    finally:
        server.stop()
        if qemu_io.poll() is None:
            qemu_io.kill()
            qemu_io.wait()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("alice\n", "line 1 is not username:hexkey"),
        ("alice:abc\n", "line 1: the key is not an even number of hex digits"),
        ("\nalice:zz\n", "line 2: the key is not an even number of hex digits"),
        ("alice:00\nalice:11\n", "line 2: username 'alice' is given twice"),
        ("", "no username:hexkey line"),
    ],
)
def test_bad_psk_file_is_one_line_error(
    served: Served, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "keys.psk"
    path.write_text(content)
    result = cli("serve", served.point, "--listen", "0.0.0.0:0", "--tls-psk", path)
    assert result.code == 1 and message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1


def test_psk_option_rules(served: Served, tmp_path: Path) -> None:
    missing = cli("serve", served.point, "--listen", "127.0.0.1:0", "--tls-psk", tmp_path / "no")
    assert missing.code == 1 and "cannot read the PSK file" in missing.err
    assert len(missing.err.strip().splitlines()) == 1
    path = _keys_dir(tmp_path / "k", alice=b"\x01" * 32) / "keys.psk"
    on_unix = cli("serve", served.point, "--socket", tmp_path / "s", "--tls-psk", path)
    assert on_unix.code == 2
    both = cli("serve", served.point, "--listen", "127.0.0.1:0", "--tls-psk", path,
               "--tls-cert", path, "--tls-key", path)  # fmt: skip
    assert both.code == 2
