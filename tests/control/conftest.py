"""A server with a fast control-plane clock, agents, a webhook receiver and an SMTP server,
all real processes or sockets on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import free_port, init_server

PASSWORD = "control test passphrase"
SPEED = 30.0  # one control-plane minute = 2 real seconds


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}
    return {**out, **extra}


def cli(token: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=env(STRONGROOM_TOKEN=token, STRONGROOM_PASSWORD=PASSWORD),
    )


def ok(token: str, *args: str) -> str:
    done = cli(token, *args)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@dataclass
class Control:
    data: Path
    port: int
    admin: str
    origin: float
    proc: subprocess.Popen[bytes] | None = None
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "strongroom.cli.main",
                "server",
                "run",
                "--data",
                str(self.data),
                "--listen",
                f"127.0.0.1:{self.port}",
            ],
            env=env(
                STRONGROOM_CONTROL_CLOCK=f"{SPEED}@{self.origin}", STRONGROOM_CONTROL_TICK="0.2"
            ),
            stderr=subprocess.DEVNULL,
        )
        wait_for("the server", self._listening, 30)

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

    def admin_json(self, *args: str) -> Any:
        return json.loads(ok(self.admin, *args, "--server", self.url, "--json"))

    def register(self, machine: str, folder: Path) -> None:
        enrol = self.admin_json("token", "create", "--role", "enrol")["token"]
        token_file = folder.parent / f"{machine}.enrol"
        token_file.write_text(enrol)
        pw = folder.parent / f"{machine}.pass"
        pw.write_text(PASSWORD)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "strongroom.cli.main",
                "agent",
                "register",
                "--server",
                self.url,
                "--enrol-token-file",
                str(token_file),
                "--name",
                machine,
                "--password-file",
                str(pw),
                "--config",
                str(folder),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env=env(),
        )
        assert done.returncode == 0, done.stderr

    def start_agent(self, machine: str, folder: Path) -> None:
        self.agents[machine] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "strongroom.cli.main",
                "agent",
                "run",
                "--config",
                str(folder),
                "--wait",
                "2",
            ],
            env=env(STRONGROOM_AGENT_PROGRESS="0.2", XDG_CACHE_HOME=str(folder / "xdg")),
            stderr=open(folder.parent / f"{machine}.log", "ab"),  # noqa: SIM115
        )

    def stop_agent(self, machine: str) -> None:
        proc = self.agents.pop(machine)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    def jobs(self, item: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.admin_json(
            "jobs", "list", "--item", item, "--limit", "1000"
        )
        return rows

    def item(self, name: str) -> dict[str, Any]:
        rows = self.admin_json("items", "list")
        return next(r for r in rows if r["name"] == name)


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Control]:
    data = tmp_path_factory.mktemp("control") / "data"
    admin = init_server(data)
    c = Control(data, free_port(), admin, time.time())
    c.start()
    yield c
    for machine in list(c.agents):
        c.stop_agent(machine)
    c.stop()


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Receivers:
    webhook: str
    smtp: str
    posts: list[dict[str, Any]]
    mails: list[str]


@pytest.fixture(scope="module")
def receivers() -> Iterator[Receivers]:
    from aiosmtpd.controller import Controller

    posts: list[dict[str, Any]] = []
    mails: list[str] = []

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
            content = envelope.content
            mails.append(content.decode() if isinstance(content, bytes) else str(content))
            return "250 OK"

    hook = type("Hook", (_Hook,), {"received": posts})
    web = ThreadingHTTPServer(("127.0.0.1", 0), hook)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    smtp_port = free_port()
    smtp = Controller(Handler(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    yield Receivers(
        f"http://127.0.0.1:{web.server_port}/hook", f"127.0.0.1:{smtp_port}", posts, mails
    )
    smtp.stop()
    web.shutdown()
