"""Instant recovery against the real test guest: boot from the vault, finalize, abort, and
an export killed with -9 and resumed while the guest runs."""

from __future__ import annotations

import json
import os
import signal
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from strongroom.image.nbd.lifetime import pid_alive

from ._guest import SESSION, DiskSpec, Guest, MiB
from ._helpers import backup, init_vault, sr


@dataclass
class Point:
    vault: Path
    point: str
    sha: dict[str, str]
    guest: Guest


@pytest.fixture(scope="module")
def point(
    make_guest: Callable[..., Guest], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Point]:
    """A point of a guest with data on vda and an ext4 vdb; the guest is then removed."""
    specs = [DiskSpec("vda", size=32 * MiB), DiskSpec("vdb", size=16 * MiB, ext4=True)]
    g = make_guest("inst", specs, agent=False)
    g.start()
    g.write("vda", 4, 4)
    g.write("vda", 20, 2)
    sha = {t: g.sha(t) for t in ("vda", "vdb")}
    vault = init_vault(tmp_path_factory.mktemp("inst") / "vault")
    doc = backup(vault, g)
    g.stop()
    yield Point(vault, doc["point"], sha, g)
    g.remove()


@pytest.fixture
def state(point: Point, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = point.guest.folder / f"instant-{os.urandom(3).hex()}"
    monkeypatch.setenv("STRONGROOM_INSTANT_DIR", str(root))
    monkeypatch.setenv("STRONGROOM_INSTANT_SUPERVISOR", "process")  # even under systemd
    return root


def _instant(p: Point, name: str) -> tuple[Guest, Path]:
    folder = p.guest.folder / name
    folder.mkdir()
    full = f"{SESSION}{name}"
    result = sr(p.vault, "restore", "vm", p.point, "--instant", "--as-new", full,
                "--disk-dir", folder, "--json")  # fmt: skip
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["export"] == "running" and doc["domain"] == "running"
    clone = Guest(p.guest.conn, full, p.guest.folder, p.guest.image, [])
    clone.connect(f"{full}-console.sock")
    return clone, folder


def _status(p: Point) -> list[dict[str, Any]]:
    result = sr(p.vault, "instant", "list", "--json")
    assert result.code == 0, result.err
    rows: list[dict[str, Any]] = json.loads(result.out)
    return rows


def _nbd_backed(dom: Any, flags: int = 0) -> bool:
    root = ET.fromstring(dom.XMLDesc(flags))
    return root.find("./devices/disk/backingStore/source[@protocol='nbd']") is not None


def test_instant_then_finalize(point: Point, state: Path) -> None:
    clone, _ = _instant(point, "ifin")
    try:
        assert clone.sha("vda") == point.sha["vda"]  # read through the export
        clone.sh.check("echo instant-ok > /mnt/hello && sync")
        rows = _status(point)
        assert [r["name"] for r in rows] == [clone.name] and rows[0]["export"] == "running"
        pid, sup = rows[0]["pid"], rows[0]["supervisor_pid"]
        assert _nbd_backed(clone.dom) and _nbd_backed(clone.dom, 2)

        result = sr(point.vault, "instant", "finalize", clone.name)
        assert result.code == 0, result.err
        assert not pid_alive(pid) and not pid_alive(sup) and not (state / clone.name).exists()
        assert _status(point) == []
        assert not _nbd_backed(clone.dom) and not _nbd_backed(clone.dom, 2)

        clone.stop()  # power off, then boot from the local disks alone
        clone.dom.create()
        clone.connect(f"{clone.name}-console.sock")
        assert clone.sh.check("cat /mnt/hello") == "instant-ok"
        assert clone.sha("vda") == point.sha["vda"]
    finally:
        clone.remove()


def test_abort_leaves_nothing(point: Point, state: Path) -> None:
    clone, folder = _instant(point, "iabort")
    row = _status(point)[0]
    pid, sup = row["pid"], row["supervisor_pid"]
    result = sr(point.vault, "instant", "abort", clone.name)
    assert result.code == 0, result.err
    assert clone.name not in [d.name() for d in clone.conn.listAllDomains(0)]
    assert list(folder.iterdir()) == []  # no overlay
    assert not pid_alive(pid) and not pid_alive(sup)
    assert not (state / clone.name).exists()  # no socket, pid file or log
    assert _status(point) == []


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


_READ = "echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda of=/dev/null bs=1M count=8"


def test_export_killed_is_restarted_by_its_supervisor(point: Point, state: Path) -> None:
    clone, _ = _instant(point, "ikill")
    try:
        row = _status(point)[0]
        assert row["supervisor"] == "process" and row["restarts"] == 0
        sup, pid = row["supervisor_pid"], row["pid"]
        assert pid_alive(sup) and os.getppid() != sup  # detached: outlived the command
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: _status(point)[0]["restarts"] == 1, 15, "the supervisor's restart")
        _wait(lambda: _status(point)[0]["export"] == "running", 30, "the new export")
        row = _status(point)[0]
        assert row["pid"] not in (None, pid) and row["supervisor_pid"] == sup
        _wait(lambda: clone.sh.run(_READ)[0] == 0, 60, "the guest reading again")
        assert clone.sha("vda") == point.sha["vda"]
        assert "export exited with -9: restarting" in (state / clone.name / "serve.log").read_text()
    finally:
        sr(point.vault, "instant", "abort", clone.name)
        clone.remove()
    assert not pid_alive(sup)


def test_export_and_supervisor_killed_then_resumed(point: Point, state: Path) -> None:
    clone, _ = _instant(point, "iresume")
    try:
        row = _status(point)[0]
        os.kill(row["supervisor_pid"], signal.SIGKILL)
        os.kill(row["pid"], signal.SIGKILL)
        _wait(lambda: not pid_alive(row["pid"]), 10, "the export to die")
        rc, _ = clone.sh.run(_READ)
        assert rc != 0  # an I/O error, never zeros
        assert _status(point)[0]["export"] == "down"

        result = sr(point.vault, "instant", "resume", clone.name)
        assert result.code == 0, result.err
        row = _status(point)[0]
        assert row["export"] == "running" and pid_alive(row["supervisor_pid"])
        again = sr(point.vault, "instant", "resume", clone.name)
        assert again.code == 1 and "already running" in again.err
        _wait(lambda: clone.sh.run(_READ)[0] == 0, 60, "the guest reading again")
        assert clone.sha("vda") == point.sha["vda"]
    finally:
        sr(point.vault, "instant", "abort", clone.name)
        clone.remove()
