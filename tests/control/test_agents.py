"""End to end: a server with a fast clock, a real agent, a policy that runs every minute,
retention, overdue and recovery alerts (webhook and SMTP), and cancelling a running job."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

from strongroom.server.control.client import ControlClient
from tests.control.conftest import Control, Receivers, cli, ok, wait_for


def _tree(root: Path, files: int, size: int) -> Path:
    root.mkdir(parents=True)
    for i in range(files):
        (root / f"f{i:05d}").write_bytes(os.urandom(size))
    return root


def _vault(control: Control, name: str) -> str:
    url = f"{control.url}/{name}"
    ok(control.admin, "init", "--vault", url, "--kdf-memory", "1", "--kdf-time", "1")
    return url


def _live_points(control: Control, url: str, source: str) -> set[str]:
    rows = json.loads(ok(control.admin, "points", "--vault", url, "--json"))
    return {r["id"] for r in rows if r["source"] == source}


def _events(receivers: Receivers, item: str) -> list[str]:
    return [p["event"] for p in receivers.posts if p.get("item") == item]


def test_policy_retention_overdue_and_recovery(
    control: Control, receivers: Receivers, tmp_path: Path
) -> None:
    url = _vault(control, "main")
    control.register("web01", tmp_path / "web01")
    ok(control.admin, "alert", "add", "webhook", receivers.webhook, "--server", control.url)
    ok(
        control.admin,
        "alert",
        "add",
        "email",
        "ops@example.com",
        "--smtp",
        receivers.smtp,
        "--server",
        control.url,
    )
    control.admin_json(
        "policy",
        "create",
        "minutely",
        "--vault",
        "main",
        "--schedule",
        "*:*",
        "--keep-last",
        "2",
        "--grace",
        "3",
    )
    data = _tree(tmp_path / "site", 20, 2000)
    control.admin_json(
        "protect", "files", "web01", str(data), "--name", "site", "--policy", "minutely"
    )
    control.start_agent("web01", tmp_path / "web01")

    def settled_retentions() -> list[dict[str, Any]]:
        jobs = control.jobs("site")
        done = [j for j in jobs if j["kind"] == "retention" and j["state"] == "succeeded"]
        return jobs if len(done) >= 2 else []

    wait_for("two retention runs", settled_retentions, 90)
    # the agent keeps working through a server restart
    control.stop()
    control.start()
    before = len([j for j in control.jobs("site") if j["state"] == "succeeded"])
    wait_for(
        "backups after the restart",
        lambda: len([j for j in control.jobs("site") if j["state"] == "succeeded"]) >= before + 2,
        60,
    )
    control.stop_agent("web01")
    # (the restart itself may have made the item overdue for a moment, and recovered)
    seen, mails = len(_events(receivers, "site")), len(receivers.mails)

    jobs = sorted(control.jobs("site"), key=lambda j: j["id"])
    backups = [j for j in jobs if j["kind"] == "backup" and j["state"] == "succeeded"]
    retentions = [j for j in jobs if j["kind"] == "retention" and j["state"] == "succeeded"]
    assert len(backups) >= 3
    # retention keeps what its rule says: after the last retention that ran, the two newest
    # points of that moment and every later one are live, all older ones are forgotten
    last = retentions[-1]
    at = next(i for i, b in enumerate(backups) if b["scheduled"] == last["scheduled"])
    points = [b["point"] for b in backups]
    # (of the points jobs recorded: the agent's SIGTERM between a commit and its report leaves
    # a point whose job was reported failed, and retention never ran after it)
    assert _live_points(control, url, "site") & set(points) == set(points[max(0, at - 1) :])
    forgotten = {p for r in retentions for p in r["payload"]["points"]}
    assert forgotten == set(points[: max(0, at - 1)])

    # a stopped agent: the item turns overdue, and both receivers hear of it once
    wait_for("overdue", lambda: control.item("site")["health"] == "overdue", 60)

    def new_events() -> list[str]:
        return _events(receivers, "site")[seen:]

    wait_for("webhook overdue", lambda: "overdue" in new_events(), 30)
    # the restart's own overdue moment can be reported after ``seen`` was taken (a fresh-clone
    # CI run saw its "recovered" arrive late): those notices end in a recovery, and this
    # overdue is the last one
    early = new_events()
    first = len(early) - 1 - early[::-1].index("overdue")
    assert not early[:first] or early[first - 1] == "recovered", early
    seen += first
    wait_for("mail overdue", lambda: any("site: overdue" in m for m in receivers.mails[mails:]))
    time.sleep(2)  # a minute of the test clock: still one notice (de-duplicated)
    assert new_events() == ["overdue"]
    # the agent back: a recovery notice
    control.start_agent("web01", tmp_path / "web01")
    wait_for("recovered", lambda: "recovered" in new_events(), 60)
    wait_for("mail recovered", lambda: any("site: recovered" in m for m in receivers.mails))
    assert new_events() == ["overdue", "recovered"]
    assert control.item("site")["health"] == "ok"
    control.stop_agent("web01")

    request = urllib.request.Request(
        control.url + "/metrics", headers={"Authorization": f"Bearer {control.admin}"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        text = reply.read().decode()
    assert 'strongroom_item_last_success_timestamp_seconds{item="site"}' in text
    assert 'strongroom_jobs{kind="backup",state="succeeded"}' in text


def test_cancel_mid_backup_leaves_the_vault_consistent(control: Control, tmp_path: Path) -> None:
    url = _vault(control, "big")
    control.register("db01", tmp_path / "db01")
    control.admin_json("policy", "create", "yearly", "--vault", "big", "--schedule", "yearly")
    # long enough to be cancelled: a backup is stopped within a second of the cancel, so the
    # tree costs little beyond writing it (5,000 files, 120 MB, raced a fresh-clone CI run)
    data = _tree(tmp_path / "bulk", 16000, 24 * 1024)
    control.admin_json(
        "protect", "files", "db01", str(data), "--name", "bulk", "--policy", "yearly"
    )
    control.start_agent("db01", tmp_path / "db01")
    token_file = tmp_path / "admin.token"
    token_file.write_text(control.admin)
    client = ControlClient(control.url, token_file)  # in-process: polls quickly
    job = client.backup_now("bulk")["job"]

    def running() -> bool:
        j = client.job(job)
        return bool(j["state"] == "running" and j["files"] > 0)

    wait_for("the backup to make progress", running, 60)
    client.cancel(job)
    client.close()
    shown = wait_for(
        "the cancel",
        lambda: (
            (j := control.admin_json("jobs", "show", str(job)))["state"]
            in ("cancelled", "succeeded", "failed")
            and j
        ),
        60,
    )
    assert shown["state"] == "cancelled", shown
    assert shown["point"] is None
    control.stop_agent("db01")
    check = cli(control.admin, "check", "--read-data", "--vault", url)
    assert check.returncode == 0, check.stdout + check.stderr
    assert _live_points(control, url, "bulk") == set()


def test_bad_input_is_one_line(control: Control, tmp_path: Path) -> None:
    for args, words in [
        (("policy", "create", "x", "--vault", "v", "--schedule", "noon"), "invalid schedule"),
        (
            ("policy", "create", "x", "--vault", "v", "--schedule", "daily", "--window", "9-5"),
            "invalid window",
        ),
        (("protect", "files", "nomachine", "/srv", "--name", "a", "--policy", "none"), "no policy"),
        (("jobs", "show", "999999"), "no job"),
        (("alert", "add", "email", "ops@example.com", "--smtp", "nohost"), "--smtp HOST:PORT"),
    ]:
        done = cli(control.admin, *args, "--server", control.url)
        assert done.returncode == 1, (args, done.stderr)
        assert words in done.stderr and done.stderr.count("\n") == 1, done.stderr
    done = cli(control.admin, "agent", "run", "--config", str(tmp_path / "none"))
    assert done.returncode == 1 and "agent register" in done.stderr, done.stderr
    backup = control.admin_json("token", "create", "--role", "backup")["token"]
    done = cli(backup, "items", "list", "--server", control.url)
    assert done.returncode == 1 and "a backup token cannot" in done.stderr, done.stderr
