"""The control plane's "done when" with a VM: a server and two agents on this machine, one
backing up files and one the libvirt test guest (shut off: read through qemu-nbd), a policy
of every minute producing points, retention keeping exactly what its rule says, the stopped
VM agent's item turning overdue with alerts and recovering; and the policy's consistency
reaching the engine on a running guest."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.control.conftest import Control, Receivers, control, ok, receivers, wait_for
from tests.control.test_images import check_keep_last_2, retentions_done, vault

from ._guest import DiskSpec, Guest, MiB, run

__all__ = ["control", "receivers"]  # the fixtures this module uses from tests/control


@pytest.fixture(scope="module")
def guest(make_guest: Callable[..., Guest]) -> Iterator[Guest]:
    g = make_guest("agentvm", [DiskSpec("vda", size=24 * MiB)], agent=False)
    run("qemu-io", "-f", "qcow2", "-c", "write -P 0x33 1M 4M", g.disk_path("vda"))  # shut off
    yield g
    g.remove()


def _done(control: Control, item: str) -> Callable[[], bool]:
    return lambda: retentions_done(control, item, 2)


def test_two_agents_files_and_vm(
    control: Control, receivers: Receivers, guest: Guest, tmp_path: Path
) -> None:
    url = vault(control, "fleet")
    site = tmp_path / "site"
    site.mkdir()
    for i in range(10):
        (site / f"f{i}").write_bytes(os.urandom(3000))
    ok(control.admin, "alert", "add", "webhook", receivers.webhook, "--server", control.url)
    ok(
        control.admin, "alert", "add", "email", "ops@example.com", "--smtp", receivers.smtp,
        "--server", control.url,
    )  # fmt: skip
    control.admin_json(
        "policy", "create", "every-minute", "--vault", "fleet", "--schedule", "*:*",
        "--keep-last", "2", "--grace", "3", "--consistency", "auto",
    )  # fmt: skip
    for machine in ("web01", "kvm1"):
        control.register(machine, tmp_path / machine)
    control.admin_json(
        "protect", "files", "web01", str(site), "--name", "site", "--policy", "every-minute"
    )
    control.admin_json(
        "protect", "vm", "kvm1", guest.name, "--name", "guest-vm", "--policy", "every-minute"
    )
    for machine in ("web01", "kvm1"):
        control.start_agent(machine, tmp_path / machine)
    for item in ("site", "guest-vm"):
        wait_for(f"two retention runs of {item}", _done(control, item), 180)
    control.stop_agent("kvm1")
    check_keep_last_2(control, url, "guest-vm", guest.name)  # a VM's source: its domain
    backups = [j for j in control.jobs("guest-vm") if j["kind"] == "backup" and j["point"]]
    first, last = backups[-1], backups[0]  # newest first
    assert first["bytes_read"] == 4 * MiB and last["files"] == 1, first  # one disk's data
    shown = control.admin_json("jobs", "show", str(last["id"]))
    assert any(f"vm {guest.name}: read" in x["line"] for x in shown["log"]), shown
    control.stop_agent("web01")
    check_keep_last_2(control, url, "site", "site")
    # the VM agent stopped: its item turns overdue, the webhook and the SMTP server hear of
    # it; the agent started again brings a recovery notice
    wait_for("overdue", lambda: control.item("guest-vm")["health"] == "overdue", 60)
    wait_for("the overdue alert", lambda: "overdue" in _events(receivers), 30)
    wait_for("the overdue mail", lambda: any("guest-vm: overdue" in m for m in receivers.mails))
    control.start_agent("kvm1", tmp_path / "kvm1")
    wait_for("recovered", lambda: "recovered" in _events(receivers), 60)
    wait_for("the mail", lambda: any("guest-vm: recovered" in m for m in receivers.mails))
    # once each (a "failed" may come first: the stop can land in a job)
    events = [e for e in _events(receivers) if e != "failed"]
    assert events == ["overdue", "recovered"], _events(receivers)
    control.stop_agent("kvm1")


def _finished(control: Control, job: int) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        j: dict[str, Any] = control.admin_json("jobs", "show", str(job))
        return None if j["state"] in ("queued", "running") else j

    return check


def _events(receivers: Receivers) -> list[str]:
    return [p["event"] for p in receivers.posts if p.get("item") == "guest-vm"]


@pytest.fixture(scope="module")
def running(make_guest: Callable[..., Guest]) -> Iterator[Guest]:
    g = make_guest("agentrun", [DiskSpec("vda", size=16 * MiB)], agent=False)
    g.start()
    yield g
    g.remove()


def test_the_policy_consistency_reaches_the_engine(
    control: Control, running: Guest, tmp_path: Path
) -> None:
    """A running guest without a guest agent: `app` fails (nothing committed), `crash` makes
    a crash-consistent point."""
    vault(control, "cons")
    control.register("kvm2", tmp_path / "kvm2")
    for mode in ("app", "crash"):
        control.admin_json(
            "policy", "create", f"{mode}-only", "--vault", "cons", "--schedule", "yearly",
            "--consistency", mode,
        )  # fmt: skip
        control.admin_json(
            "protect", "vm", "kvm2", running.name, "--name", f"run-{mode}",
            "--policy", f"{mode}-only",
        )  # fmt: skip
    control.start_agent("kvm2", tmp_path / "kvm2")
    results = {}
    for mode in ("app", "crash"):
        job = control.admin_json("backup-now", f"run-{mode}")["job"]
        results[mode] = wait_for(f"the {mode} backup", _finished(control, job), 120)
    control.stop_agent("kvm2")
    app, crash = results["app"], results["crash"]
    assert app["state"] == "failed" and "app-consistent" in app["reason"], app
    assert app["point"] is None
    assert crash["state"] == "succeeded" and crash["point"], crash
    assert any(", crash; point" in x["line"] for x in crash["log"]), crash["log"]
