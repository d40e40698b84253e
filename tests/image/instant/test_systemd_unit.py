"""The transient systemd unit's command line (systemd is not PID 1 here, so the unit itself
cannot run in the tests; the supervisor path is tested on the real guest in
tests/libvirt/test_instant.py), and which exits the supervisors count as failures."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from strongroom.image.instant.state import InstantRecord
from strongroom.image.instant.supervisor import clean_exit
from strongroom.image.instant.systemd import systemd_is_init, unit_argv


def test_unit_argv(tmp_path: Path) -> None:
    record = InstantRecord("web1", "ab" * 32, "/vault", "qemu:///system", root=str(tmp_path))
    argv = unit_argv(record, {"PYTHONPATH": "/src", "STRONGROOM_PASSWORD": "secret"})
    user = ["--user"] if os.geteuid() != 0 else []
    assert argv[: 2 + len(user)] == ["systemd-run", *user, "--unit=strongroom-instant-web1"]
    assert "--property=Restart=on-failure" in argv
    assert "--property=SuccessExitStatus=130" in argv  # SIGTERM'd export: asked to stop
    assert f"--property=LoadCredential=passphrase:{tmp_path}/web1/passphrase" in argv
    assert "--setenv=PYTHONPATH=/src" in argv
    assert f"--setenv=STRONGROOM_INSTANT_DIR={tmp_path}" in argv
    assert not any("secret" in a for a in argv)  # the passphrase never on a command line
    tail = argv[argv.index("--") + 1 :]
    assert tail == [sys.executable, "-m", "strongroom.cli.main", "instant", "run", "web1"]


def test_systemd_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRONGROOM_INSTANT_SUPERVISOR", "process")
    assert not systemd_is_init()
    monkeypatch.delenv("STRONGROOM_INSTANT_SUPERVISOR")
    assert systemd_is_init() == Path("/run/systemd/system").is_dir()


def test_clean_exits() -> None:
    assert clean_exit(0) and clean_exit(130) and clean_exit(-signal.SIGTERM)
    assert not clean_exit(1) and not clean_exit(-signal.SIGKILL) and not clean_exit(-11)
