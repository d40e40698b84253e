"""The server killed with SIGKILL while five clients back up: nothing committed is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.server.conftest import (
    PASSWORD,
    Runner,
    Served,
    free_port,
    init_server,
    new_token,
    start_server,
)

CLIENTS = 5


def _backup(token: str, src: Path, source: str, url: str, cache: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "STRONGROOM_TOKEN": token,
        "STRONGROOM_PASSWORD": PASSWORD,
        "XDG_CACHE_HOME": str(cache),
    }
    env.pop("STRONGROOM_TOKEN_FILE", None)
    argv = ["backup", "files", str(src), "--source", source, "--vault", url, "--json"]
    return subprocess.Popen(
        [sys.executable, "-m", "strongroom.cli.main", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_uploads(
    vault_dir: Path, clients: list[subprocess.Popen[str]], deadline: float
) -> None:
    while time.monotonic() < deadline:
        if any((vault_dir / "data").glob("*/*")):
            return
        for c in clients:
            if c.poll() is not None:
                raise AssertionError(f"a client ended early: {c.communicate()}")
        time.sleep(0.01)
    raise AssertionError("no pack was uploaded")


def test_server_killed_while_five_clients_upload(tmp_path: Path, run: Runner) -> None:
    data = tmp_path / "server"
    admin = init_server(data)
    port = free_port()
    proc = start_server(data, port)
    served = Served(f"http://127.0.0.1:{port}", data, admin, proc)
    url = f"{served.url}/v"
    code, _, err = run(admin, "init", "--vault", url, "--kdf-memory", "1", "--kdf-time", "1")
    assert code == 0, err
    sources = [f"m{i}" for i in range(CLIENTS)]
    tokens = {s: new_token(run, served, "backup", "--source", s) for s in sources}
    for i, s in enumerate(sources):
        (tmp_path / s).mkdir()
        for j in range(3):  # one pack each: below the test server's upload limit
            (tmp_path / s / f"f{j}").write_bytes(os.urandom((1 + i % 2) << 20))
    cache = tmp_path / "cache"

    clients = [_backup(tokens[s], tmp_path / s, s, url, cache) for s in sources]
    _wait_for_uploads(served.vault_dir("v"), clients, time.monotonic() + 60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    committed, failed = [], []
    for c in clients:
        out, err = c.communicate(timeout=120)
        if c.returncode == 0:
            committed.append(json.loads(out)["point"])
        else:
            lines = err.strip().splitlines()
            assert c.returncode == 1 and len(lines) == 1, err
            assert lines[0].startswith("error: ") and "Traceback" not in err
            failed.append(lines[0])
    assert failed, "the kill came after every backup had finished"

    proc = start_server(data, port)
    try:
        restore = new_token(run, served, "restore")
        code, out, err = run(restore, "points", "--vault", url, "--json")
        assert code == 0, err
        assert set(committed) <= {p["id"] for p in json.loads(out)}
        maintenance = new_token(run, served, "maintenance")
        code, out, err = run(maintenance, "check", "--read-data", "--vault", url, "--json")
        assert code == 0, err
        again = [_backup(tokens[s], tmp_path / s, s, url, cache) for s in sources]
        for c in again:
            out, err = c.communicate(timeout=120)
            assert c.returncode == 0, err
        code, out, err = run(restore, "points", "--vault", url, "--json")
        listed = json.loads(out)
        assert {p["source"] for p in listed} == set(sources)
        code, out, err = run(maintenance, "check", "--read-data", "--vault", url)
        assert code == 0, err
    finally:
        proc.terminate()
        proc.wait(timeout=10)
