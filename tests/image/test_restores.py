"""Every restore kind at every point in time gives images identical to the source then.

The sample VM (GPT + ext4 disk, MBR + FAT32 disk) is backed up, changed with debugfs and
mtools, backed up again and changed once more; ``qemu-img compare`` judges the results
against sparse copies taken at each point.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from strongroom.image.formats import extension_for

from ._vm import MiB, allocated, chunk_changes, cli, identical, nonzero_bytes, raw_content
from .conftest import History

pytestmark = pytest.mark.usefixtures("image_tools")
TARGETS = ("vda", "vdb")


def _disk_sources(xml: Path) -> dict[str, tuple[str, str]]:
    root = ET.parse(xml).getroot()
    found = {}
    for disk in root.iterfind("./devices/disk[@device='disk']"):
        target = disk.find("target")
        source = disk.find("source")
        driver = disk.find("driver")
        assert target is not None and source is not None and driver is not None
        found[target.get("dev", "")] = (source.get("file", ""), driver.get("type", ""))
    return found


def _assert_sparse(path: Path, fmt: str, source_content: bytes) -> None:
    """Allocated size close to the data: within the format's allocation granularity."""
    granularity = {"vdi": MiB, "vpc": 2 * MiB, "vhdx": MiB}.get(fmt, 64 * 1024)
    data = nonzero_bytes(source_content, granularity)
    assert allocated(path) <= data + 4 * MiB, (path, allocated(path), data)
    assert allocated(path) < len(source_content) // 2


@pytest.mark.parametrize("n", [0, 1])
def test_restore_as_new_vm(hist_env: History, tmp_path: Path, n: int) -> None:
    h = hist_env
    out = tmp_path / "out"
    out.mkdir()
    result = cli(
        "restore", "vm", h.points[n][:12], "--as-new", "clone", "--disk-dir", out, "--json"
    )
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["kind"] == "vm-as-new" and len(doc["disks"]) == 2
    xml = out / "clone.xml"
    root = ET.parse(xml).getroot()
    assert root.findtext("name") == "clone"
    assert root.findtext("uuid") not in ("", "6f1e2a52-8a7b-4c1e-9d3f-000000000001")
    macs = [m.get("address") for m in root.iterfind("./devices/interface/mac")]
    assert macs and "52:54:00:12:34:56" not in macs and str(macs[0]).startswith("52:54:00:")
    assert root.find("./devices/disk[@device='cdrom']") is not None  # kept, not backed up
    sources = _disk_sources(xml)
    for target in TARGETS:
        path, fmt = sources[target]
        assert path == str(out / f"clone-{target}{extension_for(h.fmt(target))}")
        assert fmt == h.fmt(target)
        assert identical(Path(path), fmt, h.copies[n][target], h.fmt(target))
        _assert_sparse(Path(path), fmt, raw_content(h.copies[n][target], fmt, tmp_path))


def test_restore_as_new_in_other_format(hist_env: History, tmp_path: Path) -> None:
    h = hist_env
    args: list[str | Path] = ["--as-new", "conv", "--disk-dir", tmp_path, "--format", "qcow2"]
    args.append("--verify")
    result = cli("restore", "vm", h.points[1], *args)
    assert result.code == 0, result.err
    assert "verified" in result.out
    for target in TARGETS:
        path, fmt = _disk_sources(tmp_path / "conv.xml")[target]
        assert fmt == "qcow2" and path.endswith(".qcow2")
        assert identical(Path(path), "qcow2", h.copies[1][target], h.fmt(target))


@pytest.mark.parametrize("fmt", ["raw", "qcow2", "vmdk", "vhdx", "vpc", "vdi"])
def test_restore_disk_to_each_format(hist_env: History, tmp_path: Path, fmt: str) -> None:
    h = hist_env
    for n in (0, 1):
        target = "vda" if n == 0 else "vdb"
        dest = tmp_path / f"p{n}-{target}.img"
        result = cli("restore", "disk", h.points[n], target, "--to", dest, "--format", fmt)
        assert result.code == 0, result.err
        assert identical(dest, fmt, h.copies[n][target], h.fmt(target))
        _assert_sparse(dest, fmt, raw_content(h.copies[n][target], h.fmt(target), tmp_path))
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_restore_disk_format_from_extension_and_attach(hist_env: History, tmp_path: Path) -> None:
    h = hist_env
    other = tmp_path / "other.xml"
    other.write_text(
        "<domain type='qemu'><name>other</name><devices>"
        "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
        "<source file='/srv/other.img'/><target dev='vda' bus='virtio'/></disk>"
        "<disk type='file' device='cdrom'><target dev='sda' bus='sata'/></disk>"
        "</devices></domain>"
    )
    dest = tmp_path / "data.vhdx"
    result = cli("restore", "disk", h.points[0], "vdb", "--to", dest, "--attach", other, "--json")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["attached_target"] == "vdb" and doc["disks"][0]["format"] == "vhdx"
    assert identical(dest, "vhdx", h.copies[0]["vdb"], h.fmt("vdb"))
    sources = _disk_sources(other)
    assert sources["vda"] == ("/srv/other.img", "raw")
    assert sources["vdb"] == (str(dest), "vhdx")
    # a second attach takes the next free target
    again = tmp_path / "again.qcow2"
    result = cli("restore", "disk", h.points[1], "vda", "--to", again, "--attach", other)
    assert result.code == 0, result.err
    assert "attached as vdc" in result.out
    assert _disk_sources(other)["vdc"] == (str(again), "qcow2")


def test_restore_in_place_fast_path(hist_env: History, tmp_path: Path) -> None:
    """The current disks (changed after point 2) go back to point 1, then to point 2."""
    h = hist_env
    for n in (0, 1):
        before = {t: raw_content(h.disk(t), h.fmt(t), tmp_path) for t in TARGETS}
        after = {t: raw_content(h.copies[n][t], h.fmt(t), tmp_path) for t in TARGETS}
        (Path(h.vm.xml)).write_text("<domain>garbage that restore replaces</domain>")
        result = cli("restore", "vm", h.points[n], "--in-place", "--verify", "--json")
        assert result.code == 0, result.err
        doc = result.json()
        assert doc["kind"] == "vm-in-place"
        for disk in doc["disks"]:
            t = disk["target"]
            assert disk["mode"] == "in-place" and disk["verified"]
            assert identical(h.disk(t), h.fmt(t), h.copies[n][t], h.fmt(t))
            written, zeroed = chunk_changes(before[t], after[t])
            assert written > 0
            assert disk["chunks_written"] == written
            assert disk["chunks_zeroed"] == zeroed
            assert 0 < disk["bytes_written"] <= written * MiB
            assert disk["chunks_unchanged"] == len(after[t]) // MiB - written - zeroed
        assert doc["bytes_written"] < 12 * MiB  # a few changed files, not whole disks
        original = h.copies[n]["vda"].parent / "demo-vm.xml"
        assert Path(h.vm.xml).read_bytes() == original.read_bytes()
    # nothing differs any more: nothing is written
    result = cli("restore", "vm", h.points[1], "--in-place", "--json")
    assert result.code == 0, result.err
    assert result.json()["bytes_written"] == 0
    assert all(d["chunks_written"] == d["chunks_zeroed"] == 0 for d in result.json()["disks"])


def test_incremental_stores_only_new_chunks(hist_env: History, tmp_path: Path) -> None:
    h = hist_env
    result = cli("points", "--json", "--kind", "vm")
    assert result.code == 0
    points = {p["id"]: p for p in result.json()}
    first, second = points[h.points[0]], points[h.points[1]]
    assert first["parent"] is None and second["parent"] == h.points[0]
    assert first["consistency"] == second["consistency"] == "offline"
    s1, s2 = first["summary"], second["summary"]
    assert s1["logical_bytes"] == s2["logical_bytes"] == 192 * MiB
    changed = 0
    for t in TARGETS:
        old, new = (raw_content(h.copies[n][t], h.fmt(t), tmp_path) for n in (0, 1))
        changed += chunk_changes(old, new)[0]
    assert 0 < changed < 16
    assert s2["bytes_new"] <= changed * MiB + 64 * 1024  # changed chunks plus map pieces
    assert s2["bytes_read"] >= s1["bytes_read"] // 2
    modes = {d["target"]: d["read_mode"] for d in s2["disks"]}
    nbd = {t: "raw-seek-data" if h.fmt(t) == "raw" else "nbd-block-status" for t in TARGETS}
    assert modes == nbd
    assert all(d["change_mode"] == "full-read-hash" for d in s2["disks"])
    assert [s["target"] for s in s2["skipped"]] == ["sda"]
