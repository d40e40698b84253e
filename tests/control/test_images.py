"""Disk items end to end: an agent backs up an offline qcow2 image on a policy of every
minute, retention keeps what its rule says, a restore gives the image's data back, and a
disk backup cancelled mid-way leaves the vault consistent."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from strongroom.agent.imagework import ByteProgress
from strongroom.agent.work import JobCancelled, Reporter
from strongroom.server.control.client import ControlClient
from tests.control.conftest import Control, cli, ok, wait_for

MiB = 1 << 20


def qcow2_with_data(path: Path, mib: int, random: bool = False) -> Path:
    """A qcow2 image of ``mib`` MiB holding data (random, or patterns) made by qemu-img."""
    raw = path.with_suffix(".raw")
    with raw.open("wb") as f:
        for i in range(mib):
            f.write(os.urandom(MiB) if random else bytes([i % 251 + 1]) * MiB)
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", raw, path], check=True)
    raw.unlink()
    return path


def vault(control: Control, name: str) -> str:
    url = f"{control.url}/{name}"
    ok(control.admin, "init", "--vault", url, "--kdf-memory", "1", "--kdf-time", "1")
    return url


def live_points(control: Control, url: str, source: str) -> set[str]:
    rows = json.loads(ok(control.admin, "points", "--vault", url, "--json"))
    return {r["id"] for r in rows if r["source"] == source}


def check_keep_last_2(control: Control, url: str, item: str, source: str) -> list[str]:
    """The item's points after its last retention: exactly the two newest of that moment and
    every later one (keep-last 2); the older ones were forgotten.  The backed-up points."""
    jobs = sorted(control.jobs(item), key=lambda j: j["id"])
    backups = [j for j in jobs if j["kind"] == "backup" and j["state"] == "succeeded"]
    retentions = [j for j in jobs if j["kind"] == "retention" and j["state"] == "succeeded"]
    assert len(backups) >= 3 and retentions, jobs
    at = next(i for i, b in enumerate(backups) if b["scheduled"] == retentions[-1]["scheduled"])
    points = [str(b["point"]) for b in backups]
    live = live_points(control, url, source)
    # of the points jobs recorded, exactly the rule's are live (a job the agent's SIGTERM ended
    # between its commit and its report leaves a point no job records: it was reported failed)
    kept = set(points[max(0, at - 1) :])
    unfinished = [j for j in jobs if j["kind"] == "retention" and j["id"] > retentions[-1]["id"]]
    if unfinished:  # a retention the agent's SIGTERM ended may have forgotten some of them
        assert live & set(points) <= kept and points[-1] in live, (unfinished, live, kept)
    else:
        assert live & set(points) == kept
    forgotten = {p for r in retentions for p in r["payload"]["points"]}
    assert forgotten == set(points[: max(0, at - 1)])
    return points


def retentions_done(control: Control, item: str, count: int) -> bool:
    jobs = control.jobs(item)
    return len([j for j in jobs if j["kind"] == "retention" and j["state"] == "succeeded"]) >= count


def test_disk_item_on_a_schedule(control: Control, tmp_path: Path) -> None:
    url = vault(control, "disks")
    image = qcow2_with_data(tmp_path / "data.qcow2", 8)
    control.register("hv01", tmp_path / "hv01")
    control.admin_json(
        "policy", "create", "every-minute", "--vault", "disks", "--schedule", "*:*",
        "--keep-last", "2",
    )  # fmt: skip
    control.admin_json(
        "protect", "disk", "hv01", str(image), "--name", "data-disk", "--policy", "every-minute"
    )
    control.start_agent("hv01", tmp_path / "hv01")
    wait_for("two retention runs", lambda: retentions_done(control, "data-disk", 2), 120)
    wait_for("health ok", lambda: control.item("data-disk")["health"] == "ok", 30)
    control.stop_agent("hv01")
    points = check_keep_last_2(control, url, "data-disk", "data-disk")
    backups = [j for j in control.jobs("data-disk") if j["kind"] == "backup" and j["point"]]
    # the first backup reads the image; later ones of the unchanged image may skip it by its
    # file state (image/unchanged.py) and read nothing
    assert all(j["bytes_read"] in (0, 8 * MiB) and j["files"] == 1 for j in backups), backups
    backup = min(backups, key=lambda j: int(j["id"]))
    assert backup["bytes_read"] == 8 * MiB, backup
    shown = control.admin_json("jobs", "show", str(backup["id"]))
    assert any("disk data-disk: read" in line["line"] for line in shown["log"]), shown
    restored = tmp_path / "restored.qcow2"
    ok(control.admin, "restore", "disk", points[-1], "--to", str(restored), "--vault", url)
    cmp = subprocess.run(["qemu-img", "compare", image, restored], check=False)
    assert cmp.returncode == 0
    # /metrics: the vault's stored bytes, and the two live points' 8 MiB each over them
    request = urllib.request.Request(
        control.url + "/metrics", headers={"Authorization": f"Bearer {control.admin}"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        text = reply.read().decode()
    assert f'strongroom_vault_logical_bytes{{vault="disks"}} {16 * MiB}' in text, text
    stored = next(
        int(line.split()[-1])
        for line in text.splitlines()
        if line.startswith('strongroom_vault_stored_bytes{vault="disks"}')
    )
    ratio = next(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith('strongroom_vault_dedup_ratio{vault="disks"}')
    )
    assert abs(ratio - 16 * MiB / stored) < 1e-9


def test_disk_backup_cancelled_mid_way(control: Control, tmp_path: Path) -> None:
    url = vault(control, "bigdisk")
    image = qcow2_with_data(tmp_path / "big.qcow2", 320, random=True)
    control.register("hv02", tmp_path / "hv02")
    control.admin_json("policy", "create", "yearly", "--vault", "bigdisk", "--schedule", "yearly")
    control.admin_json(
        "protect", "disk", "hv02", str(image), "--name", "big-disk", "--policy", "yearly"
    )
    control.start_agent("hv02", tmp_path / "hv02")
    token_file = tmp_path / "admin.token"
    token_file.write_text(control.admin)
    client = ControlClient(control.url, token_file)
    job = client.backup_now("big-disk")["job"]

    def progressing() -> dict[str, Any] | None:
        j: dict[str, Any] = client.job(job)
        return j if j["state"] == "running" and j["bytes_read"] > 0 and j["percent"] else None

    running = wait_for("the disk backup to make progress", progressing, 60)
    assert 0 < running["percent"] < 100 and running["eta"] is not None, running
    client.cancel(job)
    client.close()
    done = wait_for(
        "the cancel",
        lambda: (j := control.admin_json("jobs", "show", str(job)))["state"] != "running" and j,
        60,
    )
    assert done["state"] == "cancelled" and done["point"] is None, done
    control.stop_agent("hv02")
    check = cli(control.admin, "check", "--read-data", "--vault", url)
    assert check.returncode == 0, check.stdout + check.stderr
    assert live_points(control, url, "big-disk") == set()


def test_byte_progress_sums_the_disks_and_cancels() -> None:
    reporter = Reporter(None, 1, 0)  # type: ignore[arg-type]  # never started: no client
    progress = ByteProgress(reporter)
    progress("vda", 10, 100)
    progress("vdb", 30, 100)
    snap = reporter.snapshot()
    assert snap["bytes_read"] == 40 and snap["percent"] == 20.0 and snap["eta"] is not None
    reporter.cancelled.set()
    try:
        progress("vda", 20, 100)
    except JobCancelled:
        pass
    else:
        raise AssertionError("a cancelled job's progress must raise")
