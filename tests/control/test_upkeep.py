"""The server's scheduled verification (a rotating subset, every object within N days, an
alert on damage and a notice when it is clean again), alerts on a token used from a new
address, and the vault size and dedup ratio in /metrics."""

from __future__ import annotations

import http.client
import os
import sqlite3
import urllib.request
from pathlib import Path
from typing import Any

from strongroom.server.control.verify import share
from tests.control.conftest import Control, Receivers, cli, ok, wait_for

DAYS = 0.003  # 259 s of the test clock: a little over 4 of its one-minute runs


def _catalog(control: Control, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(control.data / "catalog.sqlite") as db:
        return db.execute(sql, args).fetchall()


def _fill(control: Control, name: str, tmp: Path) -> str:
    url = f"{control.url}/{name}"
    ok(control.admin, "init", "--vault", url, "--kdf-memory", "1", "--kdf-time", "1")
    for n in range(3):  # three points: several packs, index objects and points
        folder = tmp / f"{name}-{n}"
        folder.mkdir()
        for i in range(4):
            (folder / f"f{i}").write_bytes(os.urandom(300_000))
        ok(control.admin, "backup", "files", str(folder), "--vault", url)
    return url


def _verify_jobs(control: Control, vault: str) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = control.admin_json(
        "jobs", "list", "--item", f"vault:{vault}", "--limit", "1000"
    )
    return sorted(jobs, key=lambda j: j["id"])


def _hook(control: Control, receivers: Receivers) -> None:
    done = cli(control.admin, "alert", "add", "webhook", receivers.webhook, "--server", control.url)
    assert done.returncode == 0 or "already" in done.stderr, done.stderr


def _events(receivers: Receivers, item: str) -> list[str]:
    return [p["event"] for p in receivers.posts if p.get("item") == item]


def test_scheduled_verify_rotates_and_alerts(
    control: Control, receivers: Receivers, tmp_path: Path
) -> None:
    _fill(control, "checked", tmp_path)
    _hook(control, receivers)
    shown = control.admin_json(
        "vault-schedule", "set", "checked", "--verify", "*:*", "--verify-days", str(DAYS)
    )
    assert shown["next_verify"] is not None
    objects = [
        str(p.relative_to(control.data / "vaults" / "checked"))
        for sub in ("data", "index", "points")
        for p in (control.data / "vaults" / "checked" / sub).rglob("*")
        if p.is_file()
    ]
    assert len(objects) >= 8, objects

    def all_checked() -> bool:
        rows = _catalog(control, "SELECT name, checked FROM object_checks WHERE vault = 'checked'")
        return {n for n, c in rows if c is not None} >= set(objects)

    wait_for("every object verified", all_checked, 60)
    jobs = _verify_jobs(control, "checked")
    assert jobs[0]["state"] == "succeeded" and jobs[0]["kind"] == "verify", jobs[0]
    # a rotating subset: the first run read its share, not the whole vault
    assert jobs[0]["files"] == share(len(objects), 60.0, DAYS) < len(objects), jobs[0]
    assert len([j for j in jobs if j["state"] == "succeeded"]) >= 2

    # damage one pack: a run fails, the webhook hears "verify-error" once
    pack = next(control.data / "vaults" / "checked" / o for o in objects if o.startswith("data/"))
    good = pack.read_bytes()
    pack.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
    wait_for("a verify error alert", lambda: "verify-error" in _events(receivers, "vault:checked"))
    failed = next(j for j in _verify_jobs(control, "checked") if j["state"] == "failed")
    assert pack.name in (failed["reason"] or ""), failed
    shown = control.admin_json("jobs", "show", str(failed["id"]))
    assert any("does not match its name" in x["line"] for x in shown["log"]), shown
    # repaired: the damaged object is re-read at the next run, which clears the alert
    pack.write_bytes(good)
    wait_for("recovered", lambda: "recovered" in _events(receivers, "vault:checked"))
    assert _events(receivers, "vault:checked") == ["verify-error", "recovered"]


def test_vault_schedule_bad_input(control: Control) -> None:
    for args, words in [
        (("vault-schedule", "set", "nosuch", "--verify", "daily"), "no vault"),
        (("vault-schedule", "set", "nosuch", "--verify", "noon"), "invalid schedule"),
    ]:
        done = cli(control.admin, *args, "--server", control.url)
        assert done.returncode == 1, (args, done.stderr)
        assert words in done.stderr and done.stderr.count("\n") == 1, done.stderr


def _get(control: Control, token: str, source: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", control.port, source_address=(source, 0))
    conn.request("GET", "/v1/alerts", headers={"Authorization": f"Bearer {token}"})
    status = conn.getresponse().status
    conn.close()
    return status


def test_token_used_from_a_new_address(control: Control, receivers: Receivers) -> None:
    _hook(control, receivers)
    token = control.admin_json("token", "create", "--role", "admin", "--label", "ops")
    secret, token_id = token["token"], token["id"]
    item = f"token:{token_id}"
    assert _get(control, secret, "127.0.0.1") == 200  # its first address: no alert
    wait_for(
        "the first address recorded",
        lambda: _catalog(control, "SELECT 1 FROM token_addresses WHERE token = ?", (token_id,)),
        30,
    )
    assert _events(receivers, item) == []
    for _ in range(3):  # a new address: one alert, however often it is used from there
        assert _get(control, secret, "127.0.0.7") == 200
    wait_for("the new-address alert", lambda: _events(receivers, item) == ["new-address"], 30)
    post = next(p for p in receivers.posts if p.get("item") == item)
    assert post["address"] == "127.0.0.7" and "127.0.0.1" in post["detail"], post
    assert _get(control, secret, "127.0.0.1") == 200  # a known address: nothing
    wait_for(
        "the audit rows read",
        lambda: (
            len(_catalog(control, "SELECT 1 FROM token_addresses WHERE token = ?", (token_id,)))
            == 2
        ),
    )
    assert _events(receivers, item) == ["new-address"]


def test_metrics_vault_size_and_dedup(control: Control, tmp_path: Path) -> None:
    _fill(control, "measured", tmp_path)
    files = [
        p
        for sub in ("data", "index", "points")
        for p in (control.data / "vaults" / "measured" / sub).rglob("*")
        if p.is_file()
    ]
    stored = sum(p.stat().st_size for p in files)

    def metrics() -> str:
        request = urllib.request.Request(
            control.url + "/metrics", headers={"Authorization": f"Bearer {control.admin}"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            text: str = reply.read().decode()
        return text

    line = f'strongroom_vault_stored_bytes{{vault="measured"}} {stored}'
    wait_for("the vault's size", lambda: line in metrics(), 30)
    text = metrics()
    assert f'strongroom_vault_objects{{vault="measured"}} {len(files)}' in text
    # CLI backups: stored, but no logical size known to the server, so no ratio
    assert 'strongroom_vault_logical_bytes{vault="measured"} 0' in text
    assert 'strongroom_vault_dedup_ratio{vault="measured"}' not in text
