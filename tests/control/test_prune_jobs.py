"""Prune as a scheduled job: the server queues it at the vault's prune schedule, only the
designated machine's agent claims it and runs the vault's prune with its maintenance token;
a failure (no maintenance token) alerts once and a later success sends the recovery notice."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tests.control.conftest import Control, Receivers, cli, ok, wait_for


def _vault(control: Control, name: str, tmp: Path, points: int) -> tuple[str, list[str]]:
    url = f"{control.url}/{name}"
    ok(control.admin, "init", "--vault", url, "--kdf-memory", "1", "--kdf-time", "1")
    ok(control.admin, "settings", "--soft-delete-days", "0", "--vault", url)
    made = []
    for n in range(points):
        folder = tmp / f"{name}-{n}"
        folder.mkdir()
        for i in range(3):
            (folder / f"f{i}").write_bytes(os.urandom(200_000))
        args = ("backup", "files", str(folder), "--vault", url, "--json")
        doc = json.loads(ok(control.admin, *args))
        made.append(str(doc["point"]))
    return url, made


def _packs(control: Control, name: str) -> int:
    return sum(1 for p in (control.data / "vaults" / name / "data").rglob("*") if p.is_file())


def _prunes(control: Control, vault: str) -> list[dict[str, Any]]:
    return [j for j in control.jobs(f"vault:{vault}") if j["kind"] == "prune"]


def _agent(control: Control, machine: str, tmp: Path) -> Path:
    folder = tmp / f"agent-{machine}"
    control.register(machine, folder)
    return folder


def _add_token(control: Control, folder: Path) -> None:
    token = control.admin_json("token", "create", "--role", "maintenance")["token"]
    token_file = folder.parent / f"{folder.name}.maint"
    token_file.write_text(token)
    args = ("agent", "add-token", "--role", "maintenance", "--token-file", str(token_file))
    ok("", *args, "--config", str(folder))
    assert (folder / "agent.json").stat().st_mode & 0o777 == 0o600


def test_designated_agent_prunes_on_schedule(control: Control, tmp_path: Path) -> None:
    url, (old, kept) = _vault(control, "pruned", tmp_path, 2)
    keeper, other = _agent(control, "keeper", tmp_path), _agent(control, "bystander", tmp_path)
    _add_token(control, keeper)
    _add_token(control, other)  # a maintenance token alone does not make it the designated one
    control.start_agent("bystander", other)
    shown = control.admin_json(
        "vault-schedule", "set", "pruned", "--prune", "*:*", "--prune-machine", "keeper",
        "--prune-grace-hours", "0",
    )  # fmt: skip
    assert shown["machine"] == "keeper" and shown["next_prune"] is not None
    ok(control.admin, "forget", old, "--vault", url)  # a tombstone; soft delete is 0 days
    before = _packs(control, "pruned")
    # the bystander polls all along: the queued prune stays queued (2 real s = 1 minute)
    wait_for("a queued prune", lambda: _prunes(control, "pruned"), 30)
    time.sleep(5)
    assert all(j["state"] == "queued" for j in _prunes(control, "pruned"))
    control.start_agent("keeper", keeper)
    done = wait_for(
        "a succeeded prune",
        lambda: [j for j in _prunes(control, "pruned") if j["state"] == "succeeded"],
        60,
    )
    control.stop_agent("keeper")
    control.stop_agent("bystander")
    assert {j["agent"] for j in _prunes(control, "pruned") if j["agent"]} == {"keeper"}
    # on a busy machine a second scheduled prune may have run meanwhile: the first one that
    # ran removed the point, whichever of them the list shows first
    succeeded = [j for j in _prunes(control, "pruned") if j["state"] == "succeeded"]
    assert done and len(succeeded) >= len(done)
    log = [
        x["line"]
        for job in succeeded
        for x in control.admin_json("jobs", "show", str(job["id"]))["log"]
    ]
    assert any("freed" in line and "removed" in line for line in log), log
    assert sum("1 removed after their soft-delete window" in line for line in log) == 1, log
    assert _packs(control, "pruned") < before
    ok(control.admin, "check", "--read-data", "--vault", url)
    rows = json.loads(ok(control.admin, "points", "--vault", url, "--json"))
    assert [r["id"] for r in rows] == [kept]
    target = tmp_path / "restored"
    ok(control.admin, "restore", "files", kept, "--target", str(target), "--vault", url)
    assert sum(1 for p in target.rglob("*") if p.is_file()) == 3


def test_prune_without_maintenance_token_fails_then_recovers(
    control: Control, receivers: Receivers, tmp_path: Path
) -> None:
    _vault(control, "bare", tmp_path, 1)
    done = cli(control.admin, "alert", "add", "webhook", receivers.webhook, "--server", control.url)
    assert done.returncode == 0 or "already" in done.stderr, done.stderr
    plain = _agent(control, "plain", tmp_path)
    control.admin_json(
        "vault-schedule", "set", "bare", "--prune", "*:*", "--prune-machine", "plain",
        "--prune-grace-hours", "0",
    )  # fmt: skip
    control.start_agent("plain", plain)
    failed = wait_for(
        "a failed prune",
        lambda: [j for j in _prunes(control, "bare") if j["state"] == "failed"],
        60,
    )
    assert "no maintenance token" in failed[0]["reason"]
    control.stop_agent("plain")
    _add_token(control, plain)
    control.start_agent("plain", plain)
    wait_for(
        "a succeeded prune",
        lambda: [j for j in _prunes(control, "bare") if j["state"] == "succeeded"],
        60,
    )
    control.stop_agent("plain")
    events = wait_for(
        "the recovery notice",
        lambda: (
            (e := [p["event"] for p in receivers.posts if p.get("item") == "vault:bare"])
            and "recovered" in e
            and e
        ),
        30,
    )
    assert events.count("prune-failed") == 1, events
    assert events.index("prune-failed") < events.index("recovered")


def test_prune_schedule_bad_input(control: Control, tmp_path: Path) -> None:
    url = f"{control.url}/badin"
    ok(control.admin, "init", "--vault", url, "--kdf-memory", "1", "--kdf-time", "1")
    base = ("vault-schedule", "set", "badin", "--server", control.url)
    cases = [
        (("--prune", "*:*", "--prune-machine", "nobody"), 1, "no machine 'nobody'"),
        (("--verify", "*:*", "--prune", "*:*", "--prune-machine", "nobody"), 1, "no machine"),
        (("--prune", "someday", "--prune-machine", "nobody"), 1, "someday"),
        (("--prune", "*:*"), 2, "--prune-machine"),
        ((), 2, "--verify EXPR, --prune EXPR"),
    ]
    for extra, code, text in cases:
        done = cli(control.admin, *base, *extra)
        assert done.returncode == code, (extra, done.stderr)
        assert text in done.stderr and "Traceback" not in done.stderr, done.stderr
    shown = control.admin_json("vault-schedule", "list")
    assert all(s["vault"] != "badin" for s in shown)  # nothing set by a refused request
    folder = tmp_path / "cfg"
    done = cli("", "agent", "add-token", "--role", "backup", "--token-file", "/dev/null",
               "--config", str(folder))  # fmt: skip
    assert done.returncode == 2 and "maintenance" in done.stderr, done.stderr
