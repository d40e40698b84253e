"""A dashboard restore whose agent went away before taking it: the job is re-queued when
lost, claimed as any job when the agent is back, and run exactly once."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.control.conftest import SPEED, Control, env, ok, wait_for
from tests.server.conftest import free_port, init_server
from tests.web.conftest import PASSWORDS, ROLES, api, user_add
from tests.web.test_restore import Rig, _post, _session


class LosingControl(Control):
    """A server that takes an agent as lost after 3 s without a report."""

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
                STRONGROOM_CONTROL_CLOCK=f"{SPEED}@{self.origin}",
                STRONGROOM_CONTROL_TICK="0.2",
                STRONGROOM_CONTROL_LOST="3",
            ),
            stderr=subprocess.DEVNULL,
        )
        wait_for("the server", self._listening, 30)


@pytest.fixture
def losing(tmp_path: Path) -> Iterator[LosingControl]:
    admin = init_server(tmp_path / "data")
    c = LosingControl(tmp_path / "data", free_port(), admin, time.time())
    c.start()
    yield c
    for machine in list(c.agents):
        c.stop_agent(machine)
    c.stop()


def _job(c: Control, job: int) -> dict[str, Any]:
    found: dict[str, Any] = api(c.url, c.admin, "GET", f"/v1/jobs/{job}")[1]
    return found


def test_a_restore_not_taken_is_requeued_and_runs_once(
    losing: LosingControl, tmp_path: Path
) -> None:
    c = losing
    for name, role in ROLES.items():
        pw = tmp_path / f"{name}.pw"
        pw.write_text(PASSWORDS[name] + "\n")
        assert user_add(c.url, c.admin, name, role, pw).returncode == 0
    ok(c.admin, "init", "--vault", f"{c.url}/main", "--kdf-memory", "1", "--kdf-time", "1")
    c.register("m1", tmp_path / "m1")
    c.admin_json("policy", "create", "yearly", "--vault", "main", "--schedule", "yearly")
    data = tmp_path / "site"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "a.txt").write_text("a\n")
    c.admin_json("protect", "files", "m1", str(data), "--name", "site", "--policy", "yearly")
    c.start_agent("m1", tmp_path / "m1")
    backup = int(api(c.url, c.admin, "POST", "/v1/items/site/backup-now")[1]["job"])
    wait_for("the backup", lambda: _job(c, backup)["state"] == "succeeded", 60)
    point = str(_job(c, backup)["point"])
    c.stop_agent("m1")  # it polled a moment ago: the server still takes it as online

    rig = Rig(c, data, point, "", data, tmp_path, None, "")  # type: ignore[arg-type]
    opener, csrf = _session(rig, "olga")
    target = tmp_path / "back"
    form = {
        "what": "files",
        "paths": f"{data}/sub",
        "target": str(target),
        "on_conflict": "keep-both",
        "csrf": csrf,
    }
    status, _ = _post(opener, f"{c.url}/ui/items/site/points/{point}/restore", form)
    assert status == 200
    job = max(j["id"] for j in api(c.url, c.admin, "GET", "/v1/jobs?item=site")[1]["jobs"])
    assert _job(c, job)["state"] == "running" and _job(c, job)["agent"] == "m1"
    wait_for("the lost restore re-queued", lambda: _job(c, job)["state"] == "queued", 30)
    c.start_agent("m1", tmp_path / "m1")
    wait_for("the restore", lambda: _job(c, job)["state"] not in ("queued", "running"), 60)
    assert _job(c, job)["state"] == "succeeded", _job(c, job)
    restored = target / str(data / "sub").lstrip("/")
    assert sorted(p.name for p in restored.iterdir()) == ["a.txt"]  # once: no keep-both copy
