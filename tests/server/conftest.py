"""A real vault server on a loopback port (``strongroom server run`` in a subprocess)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from strongroom.cli.main import main
from strongroom.storage.http import HttpBackend, ServerAddress

PASSWORD = "server test passphrase"
MAX_UPLOAD_MIB = 8
BODY_TIMEOUT_S = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@dataclass
class Served:
    url: str
    data: Path
    admin: str
    proc: subprocess.Popen[bytes]
    count: int = 0

    def vault_dir(self, name: str) -> Path:
        return self.data / "vaults" / name


def init_server(data: Path) -> str:
    """A new catalog in ``data``; its first admin token."""
    made = cli("server", "init", "--data", str(data), "--json")
    assert made.returncode == 0, made.stderr
    token: str = json.loads(made.stdout)["token"]
    return token


def start_server(data: Path, port: int) -> subprocess.Popen[bytes]:
    """``strongroom server run`` on ``127.0.0.1:port``, returned once it accepts connections."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strongroom.cli.main",
            "server",
            "run",
            "--data",
            str(data),
            "--listen",
            f"127.0.0.1:{port}",
            "--max-upload",
            str(MAX_UPLOAD_MIB),
            "--body-timeout",
            str(BODY_TIMEOUT_S),
        ],
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"the server did not start: {err}") from None
            time.sleep(0.05)
    return proc


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data = tmp_path_factory.mktemp("server") / "data"
    admin = init_server(data)
    port = free_port()
    proc = start_server(data, port)
    yield Served(f"http://127.0.0.1:{port}", data, admin, proc)
    proc.terminate()
    proc.wait(timeout=10)


class Runner:
    """Runs the CLI in this process with a token (and the vault's passphrase) in the env."""

    def __init__(self, mp: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        self.mp, self.capsys = mp, capsys

    def __call__(self, token: str, *args: str) -> tuple[int, str, str]:
        self.mp.setenv("STRONGROOM_TOKEN", token)
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Runner:
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSWORD)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in ("STRONGROOM_VAULT", "STRONGROOM_SERVER", "STRONGROOM_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    return Runner(monkeypatch, capsys)


def new_token(run: Runner, served: Served, role: str, *extra: str) -> str:
    code, out, err = run(
        served.admin, "token", "create", "--role", role, "--server", served.url, "--json", *extra
    )
    assert code == 0, err
    token: str = json.loads(out)["token"]
    return token


@dataclass
class ServedVault:
    name: str
    url: str
    path: Path
    tokens: dict[str, str]


@pytest.fixture
def vault(served: Served, run: Runner) -> ServedVault:
    """A new vault created through the server by `strongroom init` with the admin token."""
    served.count += 1
    name = f"v{served.count}-{os.getpid()}"
    url = f"{served.url}/{name}"
    code, _, err = run(served.admin, "init", "--vault", url, "--kdf-memory", "1", "--kdf-time", "1")
    assert code == 0, err
    tokens = {r: new_token(run, served, r) for r in ("backup", "restore", "maintenance")}
    tokens["admin"] = served.admin
    return ServedVault(name, url, served.vault_dir(name), tokens)


def tree_hash(root: Path) -> dict[str, str]:
    """Every file under ``root`` and the SHA-256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@dataclass
class InProcess:
    """A server running in this process (uvicorn in a thread): tests read its counters."""

    server: Any
    """The :class:`strongroom.server.app.Server` (imported lazily: clients never load it)."""
    port: int
    tokens: dict[str, str]
    """role -> token (admin, backup, restore, maintenance); vault ``v`` exists."""

    def backend(self, role: str) -> HttpBackend:
        address = ServerAddress("http", "127.0.0.1", self.port, "")
        return HttpBackend(address, "v", self.tokens[role])


@contextmanager
def in_process(data: Path, **limits: Any) -> Iterator[InProcess]:
    """A catalog in ``data`` with a token of each role and vault ``v``, served in a thread."""
    import uvicorn

    from strongroom.server.app import Limits, Server, create_app
    from strongroom.server.auth import new_token as make_token
    from strongroom.server.catalog import Catalog

    catalog = Catalog(data, create=True)
    tokens = {}
    for role in ("admin", "backup", "restore", "maintenance"):
        made = make_token(role)
        catalog.add_token(made.row)
        tokens[role] = made.secret
    catalog.add_vault("v", str(data / "vaults" / "v"))
    catalog.close()
    server = Server(data, Limits(**limits))
    port = free_port()
    config = uvicorn.Config(create_app(server), host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield InProcess(server, port, tokens)
    finally:
        uv.should_exit = True
        thread.join(timeout=30)
        server.close()
