"""``restore vm --instant --in-place`` on the real test guest: refused while it runs (unless
--force), abort gives the domain back exactly as it was (definition and disk files), and
finalize leaves it running on local disks holding the point plus the guest's writes."""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from strongroom.image.nbd.lifetime import pid_alive

from ._guest import DiskSpec, Guest, MiB
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
    specs = [DiskSpec("vda", size=32 * MiB), DiskSpec("vdb", size=16 * MiB, ext4=True)]
    g = make_guest("inpl", specs, agent=False)
    g.start()
    g.write("vda", 3, 2)
    sha = {t: g.sha(t) for t in ("vda", "vdb")}
    vault = init_vault(tmp_path_factory.mktemp("inpl") / "vault")
    doc = backup(vault, g)
    g.stop()
    yield Point(vault, doc["point"], sha, g)
    g.remove()


@pytest.fixture
def state(point: Point, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = point.guest.folder / f"instant-{os.urandom(3).hex()}"
    monkeypatch.setenv("STRONGROOM_INSTANT_DIR", str(root))
    monkeypatch.setenv("STRONGROOM_INSTANT_SUPERVISOR", "process")
    yield root
    if (root / point.guest.name).exists():  # a failed test: no supervisor left running
        sr(point.vault, "instant", "abort", point.guest.name)


def _file_hashes(g: Guest) -> dict[str, str]:
    return {t: hashlib.sha256(g.disk_path(t).read_bytes()).hexdigest() for t in ("vda", "vdb")}


def _sources(dom: Any, flags: int = 0) -> dict[str, str]:
    root = ET.fromstring(dom.XMLDesc(flags))
    out = {}
    for disk in root.iterfind("./devices/disk"):
        target, source = disk.find("target"), disk.find("source")
        assert target is not None and source is not None
        out[target.get("dev") or ""] = source.get("file") or ""
    return out


def _nbd_backed(dom: Any, flags: int = 0) -> bool:
    root = ET.fromstring(dom.XMLDesc(flags))
    return root.find("./devices/disk/backingStore/source[@protocol='nbd']") is not None


def _instant(p: Point, *extra: str) -> dict[str, Any]:
    result = sr(p.vault, "restore", "vm", p.point, "--instant", "--in-place", "--json", *extra)
    assert result.code == 0, result.err
    doc: dict[str, Any] = result.json()
    assert doc["name"] == p.guest.name and doc["domain"] == "running"
    overlays = {d["target"]: d["overlay"] for d in doc["disks"]}
    assert _sources(p.guest.dom) == overlays and _nbd_backed(p.guest.dom, 2)
    assert all(Path(o).parent == p.guest.folder for o in overlays.values())  # beside the disks
    p.guest.connect()
    return doc


def test_in_place_refused_while_running_and_abort_restores(point: Point, state: Path) -> None:
    g = point.guest
    uuid, xml = g.dom.UUIDString(), g.dom.XMLDesc(2)
    files = _file_hashes(g)

    doc = _instant(point)
    assert g.dom.UUIDString() == uuid
    refused = sr(point.vault, "restore", "vm", point.point, "--instant", "--in-place")
    assert refused.code == 1 and "is running: shut it down first" in refused.err
    assert len(refused.err.strip().splitlines()) == 1
    assert g.sha("vda") == point.sha["vda"]
    g.sh.check("echo never > /mnt/aborted && sync")
    result = sr(point.vault, "instant", "abort", g.name)
    assert result.code == 0, result.err
    assert not g.dom.isActive() and g.dom.XMLDesc(2) == xml  # the definition as it was
    assert _file_hashes(g) == files  # the old disks never written
    assert not any(Path(d["overlay"]).exists() for d in doc["disks"])
    assert not pid_alive(doc["pid"]) and not pid_alive(doc["supervisor_pid"])
    assert not (state / g.name).exists()


def test_in_place_force_then_finalize(point: Point, state: Path) -> None:
    g = point.guest
    g.dom.create()  # running (no need to wait for its console)
    old = {t: g.disk_path(t) for t in ("vda", "vdb")}
    uuid = g.dom.UUIDString()
    doc = _instant(point, "--force")  # powers the running domain off
    g.sh.check("echo in-place-ok > /mnt/hello && sync")
    assert all(p.exists() for p in old.values())  # untouched until finalize

    result = sr(point.vault, "instant", "finalize", g.name)
    assert result.code == 0, result.err
    assert "removed the disks it replaced" in result.out
    assert not any(p.exists() for p in old.values())
    overlays = {d["target"]: d["overlay"] for d in doc["disks"]}
    assert _sources(g.dom) == overlays == _sources(g.dom, 2)
    assert not _nbd_backed(g.dom) and not _nbd_backed(g.dom, 2)
    assert not pid_alive(doc["pid"]) and not (state / g.name).exists()

    g.stop()  # power off, then boot from the local disks alone
    g.start()
    assert g.dom.UUIDString() == uuid
    assert g.sh.check("cat /mnt/hello") == "in-place-ok"
    assert g.sha("vda") == point.sha["vda"]
