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
        pid = rows[0]["pid"]
        assert _nbd_backed(clone.dom) and _nbd_backed(clone.dom, 2)

        result = sr(point.vault, "instant", "finalize", clone.name)
        assert result.code == 0, result.err
        assert not pid_alive(pid) and not (state / clone.name).exists()
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
    pid = _status(point)[0]["pid"]
    result = sr(point.vault, "instant", "abort", clone.name)
    assert result.code == 0, result.err
    assert clone.name not in [d.name() for d in clone.conn.listAllDomains(0)]
    assert list(folder.iterdir()) == []  # no overlay
    assert not pid_alive(pid)
    assert not (state / clone.name).exists()  # no socket, pid file or log
    assert _status(point) == []


def test_export_killed_then_resumed(point: Point, state: Path) -> None:
    clone, _ = _instant(point, "ikill")
    try:
        pid = _status(point)[0]["pid"]
        os.kill(pid, signal.SIGKILL)
        read = "echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda of=/dev/null bs=1M count=8"
        rc, _ = clone.sh.run(read)
        assert rc != 0  # an I/O error, never zeros
        assert _status(point)[0]["export"] == "down"

        result = sr(point.vault, "instant", "resume", clone.name)
        assert result.code == 0, result.err
        assert _status(point)[0]["export"] == "running"
        deadline = time.monotonic() + 60
        while clone.sh.run(read)[0] != 0:  # qemu reconnects on its own (with back-off)
            assert time.monotonic() < deadline, "the guest never read from the export again"
            time.sleep(1)
        assert clone.sha("vda") == point.sha["vda"]
    finally:
        sr(point.vault, "instant", "abort", clone.name)
        clone.remove()
