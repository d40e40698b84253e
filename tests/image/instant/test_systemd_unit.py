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
    assert not any("LoadCredential=token" in a for a in argv)  # no served vault's token


def test_unit_argv_of_a_served_vault(tmp_path: Path) -> None:
    """The export of a served vault (a dashboard's instant recovery runs with its agent's
    token): the token as a second credential, never on the command line; the CA file and
    the plain-HTTP switch as environment."""
    record = InstantRecord("web1", "ab" * 32, "https://s:1/v", "qemu:///system", root=str(tmp_path))
    env = {"STRONGROOM_TOKEN": "srt_1_secret", "STRONGROOM_CA_FILE": "/etc/ca.pem"}
    argv = unit_argv(record, {**env, "STRONGROOM_ALLOW_HTTP": "1"})
    assert f"--property=LoadCredential=token:{tmp_path}/web1/token" in argv
    assert "--setenv=STRONGROOM_CA_FILE=/etc/ca.pem" in argv
    assert "--setenv=STRONGROOM_ALLOW_HTTP=1" in argv
    assert not any("srt_1_secret" in a for a in argv)


def test_the_export_reads_the_token_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strongroom.cli.instant_bg import _passphrase

    (tmp_path / "passphrase").write_text("pass phrase\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("STRONGROOM_TOKEN", "")  # undone after the test, whatever it sets
    assert _passphrase() == "pass phrase" and os.environ["STRONGROOM_TOKEN"] == ""
    (tmp_path / "token").write_text("srt_1_secret\n")
    assert _passphrase() == "pass phrase" and os.environ["STRONGROOM_TOKEN"] == "srt_1_secret"


def test_systemd_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRONGROOM_INSTANT_SUPERVISOR", "process")
    assert not systemd_is_init()
    monkeypatch.delenv("STRONGROOM_INSTANT_SUPERVISOR")
    assert systemd_is_init() == Path("/run/systemd/system").is_dir()


def test_clean_exits() -> None:
    assert clean_exit(0) and clean_exit(130) and clean_exit(-signal.SIGTERM)
    assert not clean_exit(1) and not clean_exit(-signal.SIGKILL) and not clean_exit(-11)
