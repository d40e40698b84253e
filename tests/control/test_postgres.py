"""The catalog on PostgreSQL: a real cluster from Debian's packages, two server processes
sharing it, scheduled jobs run exactly once, and a server killed with -9 loses no job."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strongroom.errors import ServerError
from strongroom.server.auth import new_token
from strongroom.server.catalog import AuditEntry, Catalog
from strongroom.server.run import init_catalog
from tests.control.conftest import env, wait_for
from tests.control.postgres import new_database, postgres_cluster, restart_cluster
from tests.server.conftest import cli as server_cli
from tests.server.conftest import free_port

CLI = (sys.executable, "-m", "strongroom.cli.main")
SPEED = 30.0  # one control-plane minute = 2 real seconds
MACHINES, ITEMS_PER_MACHINE, RUNS = 4, 5, 5


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    with postgres_cluster() as base:
        yield base


def test_catalog_on_postgres(cluster: str, tmp_path: Path) -> None:
    url = new_database(cluster, "unit")
    first = init_catalog(tmp_path / "a", url)
    assert first is not None and first.startswith("srt_")
    # a second server joins: no second first-admin token, the same rows
    assert init_catalog(tmp_path / "b", url) is None
    catalog = Catalog(tmp_path / "b")
    try:
        assert catalog.postgres
        assert [t.role for t in catalog.tokens()] == ["admin"]
        made = new_token("backup", sources=["web"], label="x")
        catalog.add_token(made.row)
        assert catalog.token(made.row.id) == made.row
        assert catalog.add_vault("v", "/srv/v") and not catalog.add_vault("v", "/srv/w")
        catalog.set_lock_owner("v", "locks/1", made.row.id)
        catalog.set_lock_owner("v", "locks/1", "other")
        assert catalog.lock_owner("v", "locks/1") == "other"
        catalog.add_sources("v", "points/p1", ["web", "db"])
        catalog.add_sources("v", "points/p1", ["web"])
        assert catalog.sources_under("v", "points/") == {"points/p1": ["db", "web"]}
        entry = AuditEntry(1.5, None, None, None, "GET", "v", "get", "x", 200, "100% done")
        catalog.audit(entry)
        assert catalog.audit_log()[-1] == entry
    finally:
        catalog.close()


def test_init_refuses_a_bad_catalog_url(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "server", "init", "--data", str(tmp_path), "--catalog", "mysql://x"],
        capture_output=True,
        text=True,
        check=False,
        env=env(),
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: invalid --catalog")


class Server:
    def __init__(self, data: Path, origin: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [*CLI, "server", "run", "--data", str(data), "--listen", f"127.0.0.1:{self.port}"],
            env=env(
                STRONGROOM_CONTROL_CLOCK=f"{SPEED}@{origin}",
                STRONGROOM_CONTROL_TICK="0.2",
                STRONGROOM_CONTROL_LOST="3",
            ),
            stderr=subprocess.DEVNULL,
        )
        wait_for("the server", lambda: _up(self.url), 30)


def _up(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/v1/health", timeout=1)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def call(
    url: str, token: str, method: str, path: str, body: Any = None, timeout: float = 10
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}{path}", data=data, method=method)
    req.add_header("authorization", f"Bearer {token}")
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        text = resp.read()
    return json.loads(text) if text else None


class Agent(threading.Thread):
    """A machine's poller through the real agent API: claims a job and reports it done (no
    backup), trying the servers in turn and the next one when a server is gone."""

    def __init__(self, servers: list[Server], token: str, stop: threading.Event, turn: int) -> None:
        super().__init__(daemon=True)
        self.servers, self.token, self.stop = servers, token, stop
        self.ran: list[int] = []
        self.turn = turn

    def request(self, method: str, path: str, body: Any = None) -> Any:
        while True:
            server = self.servers[self.turn % len(self.servers)]
            self.turn += 1
            try:
                return call(server.url, self.token, method, path, body)
            except urllib.error.HTTPError:
                raise
            except OSError:  # that server is down: the next one
                continue

    def run(self) -> None:
        while not self.stop.is_set():
            work = self.request("GET", "/v1/agent/jobs?wait=1")
            if work is None:
                continue
            self.ran.append(int(work["job"]))
            try:
                self.request("POST", f"/v1/agent/jobs/{work['job']}/result", {"state": "succeeded"})
            except urllib.error.HTTPError as exc:  # recorded by a server that died answering
                assert exc.code == 409


def _jobs(url: str) -> list[tuple[int, str, float, str]]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, item, scheduled, state FROM jobs ORDER BY id").fetchall()
    return [(int(r[0]), str(r[1]), float(r[2]), str(r[3])) for r in rows]


def _setup(server: Server, admin: str, origin: float) -> list[str]:
    """Machines and items whose policy runs RUNS times, two control minutes apart."""
    tokens = []
    for m in range(MACHINES):
        made = call(server.url, admin, "POST", "/v1/agent/register", {"name": f"m{m}"})
        tokens.append(made["token"])
    control_now = origin + (time.time() - origin) * SPEED
    first = int(control_now // 60) + 3
    minutes = ",".join(str((first + 2 * k) % 60) for k in range(RUNS))
    policy = {"name": "often", "vault": "v", "schedule": f"*:{minutes}", "grace": 1000}
    call(server.url, admin, "POST", "/v1/policies", policy)
    for m in range(MACHINES):
        for i in range(ITEMS_PER_MACHINE):
            item = {"name": f"m{m}-i{i}", "kind": "files", "machine": f"m{m}", "targets": ["/x"]}
            call(server.url, admin, "POST", "/v1/items", {**item, "policy": "often"})
    return tokens


def test_two_servers_run_each_job_once_and_survive_a_kill(cluster: str, tmp_path: Path) -> None:
    url = new_database(cluster, "scaleout")
    made = server_cli("server", "init", "--data", str(tmp_path / "a"), "--catalog", url, "--json")
    admin = json.loads(made.stdout)["token"]
    joined = server_cli("server", "init", "--data", str(tmp_path / "b"), "--catalog", url)
    assert joined.returncode == 0 and "joined the server catalog" in joined.stdout
    assert (tmp_path / "b" / "server.json").stat().st_mode & 0o777 == 0o600
    origin = time.time()
    servers = [Server(tmp_path / "a", origin), Server(tmp_path / "b", origin)]
    stop = threading.Event()
    try:
        tokens = _setup(servers[1], admin, origin)
        # two pollers per machine, one on each server: their claims race
        agents = [Agent(list(servers), t, stop, turn) for t in tokens for turn in (0, 1)]
        for a in agents:
            a.start()
        total = MACHINES * ITEMS_PER_MACHINE * RUNS

        def done() -> int:
            return sum(1 for j in _jobs(url) if j[3] == "succeeded")

        wait_for("half the jobs", lambda: done() >= total // 2, 90)
        servers[0].proc.send_signal(signal.SIGKILL)  # mid-stream: claims and results in flight
        servers[0].proc.wait(timeout=30)
        wait_for("every job", lambda: done() >= total, 90)
        time.sleep(2 * 60 / SPEED)  # nothing more comes
        stop.set()
        for a in agents:
            a.join(timeout=30)
        jobs = _jobs(url)
        assert len(jobs) == total and {j[3] for j in jobs} == {"succeeded"}
        assert len({(j[1], j[2]) for j in jobs}) == total  # each scheduled run once
        assert Counter(j[1] for j in jobs) == dict.fromkeys(Counter(j[1] for j in jobs), RUNS)
        ran = Counter(job for a in agents for job in a.ran)
        assert set(ran) == {j[0] for j in jobs} and set(ran.values()) == {1}
    finally:
        stop.set()
        for s in servers:
            if s.proc.poll() is None:
                s.proc.terminate()
                s.proc.wait(timeout=30)


def test_catalog_reconnects_after_a_database_restart(cluster: str, tmp_path: Path) -> None:
    url = new_database(cluster, "restart")
    assert init_catalog(tmp_path / "a", url) is not None
    catalog = Catalog(tmp_path / "a")
    try:
        restart_cluster(cluster)
        with pytest.raises(ServerError):  # the statement that finds the connection broken
            catalog.tokens()
        assert [t.role for t in catalog.tokens()] == ["admin"]  # a new connection
        assert catalog.add_vault("after", "/srv/after")
    finally:
        catalog.close()
