"""Restores into libvirt: in place (the next backup reads in full), as a new domain that
boots, and a disk attached live to a running domain."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ._guest import SESSION, DiskSpec, Guest, MiB
from ._helpers import backup, disk, image_sha, init_vault, reason, sr


@pytest.fixture(scope="module")
def guest(make_guest: Callable[..., Guest]) -> Iterator[Guest]:
    specs = [DiskSpec("vda", size=32 * MiB), DiskSpec("vdb", size=16 * MiB)]
    g = make_guest("rst", specs, agent=False)
    g.start()
    yield g
    g.remove()


@pytest.fixture(scope="module")
def history(
    guest: Guest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str], list[dict[str, str]]]:
    """Two points, with the guest's disk hashes at each."""
    vault = init_vault(tmp_path_factory.mktemp("rst") / "vault")
    points, states = [], []
    for offset in (2, 12):
        guest.write("vda", offset, 2)
        guest.write("vdb", offset // 2)
        states.append({t: guest.sha(t) for t in ("vda", "vdb")})
        points.append(backup(vault, guest)["point"])
    return vault, points, states


def test_in_place(
    guest: Guest, history: tuple[Path, list[str], list[dict[str, str]]], tmp_path: Path
) -> None:
    vault, points, states = history
    g = guest
    g.write("vda", 20, 3)  # changes the point does not have
    refused = sr(vault, "restore", "vm", points[0], "--in-place")
    assert refused.code == 1 and "running" in refused.err
    assert g.dom.isActive()

    result = sr(vault, "restore", "vm", points[0], "--in-place", "--force", "--json")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["kind"] == "vm-in-place"
    vda = next(d for d in doc["disks"] if d["target"] == "vda")
    # 12-13 (the second point) and 20-22 (since) were zero at the first point
    assert vda["mode"] == "in-place" and (vda["chunks_written"], vda["chunks_zeroed"]) == (0, 5)
    assert not g.dom.isActive() and g.dom.listAllCheckpoints() == []
    for target in ("vda", "vdb"):
        assert image_sha(g.disk_path(target), "qcow2", tmp_path) == states[0][target]

    g.console = None
    g.start()
    assert g.sha("vda") == states[0]["vda"]
    doc = backup(vault, g)
    assert reason(doc, "vda") == "restored-in-place"
    assert disk(doc, "vda")["read_mode"] == "libvirt-pull-full"
    assert disk(backup(vault, g), "vda")["tracking"]["chain"] == "continued"


def test_as_new_boots(
    guest: Guest, history: tuple[Path, list[str], list[dict[str, str]]], conn: object
) -> None:
    vault, points, states = history
    folder = guest.folder / "clone"
    folder.mkdir()
    name = f"{SESSION}clone"
    result = sr(
        vault, "restore", "vm", points[1], "--as-new", name, "--disk-dir", folder, "--start"
    )
    assert result.code == 0, result.err
    clone = Guest(guest.conn, name, guest.folder, guest.image, [])
    try:
        dom = clone.dom
        assert dom.isActive() and dom.UUIDString() != guest.dom.UUIDString()
        root = ET.fromstring(dom.XMLDesc(0))
        sources = [s.get("file") for s in root.iterfind("./devices/disk/source")]
        assert sources == [str(folder / f"{name}-vda.qcow2"), str(folder / f"{name}-vdb.qcow2")]
        macs = {m.get("address") for m in root.iterfind("./devices/interface/mac")}
        original = ET.fromstring(guest.dom.XMLDesc(0))
        assert macs.isdisjoint(
            m.get("address") for m in original.iterfind("./devices/interface/mac")
        )
        clone.connect(f"{name}-console.sock")  # booted to the command loop
        assert clone.sha("vda") == states[1]["vda"] and clone.sha("vdb") == states[1]["vdb"]
    finally:
        clone.remove()


def test_attach_live(guest: Guest, history: tuple[Path, list[str], list[dict[str, str]]]) -> None:
    vault, points, states = history
    g = guest
    if not g.dom.isActive():
        g.start()
    result = sr(vault, "restore", "disk", points[1], "vdb", "--attach-to", g.name, "--json")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["attached_to"] == g.name and doc["attached_target"] == "vdc"
    assert Path(doc["disks"][0]["path"]) == g.disk_path("vda").parent / f"{g.name}-vdc.qcow2"
    deadline = time.monotonic() + 30
    while g.sh.run("test -b /dev/vdc")[0] != 0:
        assert time.monotonic() < deadline, "the guest never saw the hot-plugged disk"
        time.sleep(0.3)
    assert g.sha("vdc") == states[1]["vdb"]
    persistent = ET.fromstring(g.dom.XMLDesc(2))  # VIR_DOMAIN_XML_INACTIVE
    assert "vdc" in [t.get("dev") for t in persistent.iterfind("./devices/disk/target")]
