"""The server over HTTPS, with a self-signed certificate the client trusts by STRONGROOM_CA_FILE."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from strongroom.errors import PermanentStorageError
from strongroom.server.run import SHUTDOWN_GRACE_S
from strongroom.storage.http import HttpBackend, split_vault_url
from tests.server.conftest import Runner, cli, free_port


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.crt", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


ServerProc = tuple[str, str, Path, "subprocess.Popen[bytes]"]  # url, admin token, cert, process


@pytest.fixture
def tls_server(tls_server_proc: ServerProc) -> tuple[str, str, Path]:
    url, admin, cert, _ = tls_server_proc
    return url, admin, cert


@pytest.fixture
def tls_server_proc(tmp_path: Path) -> Iterator[ServerProc]:
    data = tmp_path / "data"
    admin = json.loads(cli("server", "init", "--data", str(data), "--json").stdout)["token"]
    cert, key = self_signed(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "strongroom.cli.main", "server", "run", "--data", str(data),
         "--listen", f"127.0.0.1:{port}", "--tls-cert", str(cert), "--tls-key", str(key)],
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "no server"
            time.sleep(0.05)
    yield f"https://127.0.0.1:{port}", admin, cert, proc
    proc.terminate()
    proc.wait(timeout=10)


def test_backup_over_https(
    tls_server: tuple[str, str, Path], run: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, admin, cert = tls_server
    untrusted = HttpBackend(*split_vault_url(f"{url}/v"), admin)
    with pytest.raises(PermanentStorageError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusted.list()
    monkeypatch.setenv("STRONGROOM_CA_FILE", str(cert))
    before = open_sockets()
    vault = f"{url}/v"
    code, _, err = run(admin, "init", "--vault", vault, "--kdf-memory", "1", "--kdf-time", "1")
    assert code == 0, err
    (tmp_path / "f").write_bytes(b"over tls\n" * 1000)
    code, _, err = run(admin, "backup", "files", str(tmp_path / "f"), "--vault", vault)
    assert code == 0, err
    code, out, err = run(admin, "points", "--vault", vault, "--json")
    assert code == 0 and len(json.loads(out)) == 1, err
    # A command closes its connections when it ends, not when the collector gets to them.
    assert open_sockets() == before


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except FileNotFoundError:  # the listing's own descriptor
            continue
    return count


def test_a_server_stops_soon_though_a_client_keeps_a_tls_connection_open(
    tls_server_proc: ServerProc,
) -> None:
    url, _, cert, proc = tls_server_proc
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(cert))
    conn = http.client.HTTPSConnection(host, int(port), context=context)
    conn.request("GET", "/v1/nothing-here")
    conn.getresponse().read()  # the connection stays open, idle, kept alive
    started = time.monotonic()
    proc.terminate()
    proc.wait(timeout=SHUTDOWN_GRACE_S + 5)
    assert time.monotonic() - started < SHUTDOWN_GRACE_S + 3
    conn.close()


def test_tls_needs_both_files(tmp_path: Path) -> None:
    proc = cli(
        "server", "run", "--data", str(tmp_path), "--listen", "0.0.0.0:1",
        "--tls-cert", str(tmp_path / "c.pem"),
    )  # fmt: skip
    assert proc.returncode == 1 and "both --tls-cert and --tls-key" in proc.stderr


def test_server_vault_add_and_list(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    assert cli("server", "init", "--data", data).returncode == 0
    assert cli("server", "init", "--data", data).returncode == 1  # never twice
    proc = cli("server", "vault", "add", "--data", data, "web", str(tmp_path / "elsewhere"))
    assert proc.returncode == 0, proc.stderr
    proc = cli("server", "vault", "add", "--data", data, "db")
    assert proc.returncode == 0, proc.stderr
    proc = cli("server", "vault", "add", "--data", data, "web")
    assert proc.returncode == 1 and "exists already" in proc.stderr
    proc = cli("server", "vault", "add", "--data", data, "../x")
    assert proc.returncode == 1 and "invalid vault name" in proc.stderr
    listed = json.loads(cli("server", "vault", "list", "--data", data, "--json").stdout)
    assert listed == [
        {"name": "db", "location": str(tmp_path / "data" / "vaults" / "db")},
        {"name": "web", "location": str(tmp_path / "elsewhere")},
    ]
