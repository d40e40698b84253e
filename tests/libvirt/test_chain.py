"""Each reason a chain breaks, on a running guest: a full read with hashing, a new chain and
the reason recorded; the next backup continues the new chain; restores stay exact."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import libvirt

from ._guest import DiskSpec, Guest, MiB, make_disk
from ._helpers import backup, disk, init_vault, reason, restored_sha

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG


@pytest.fixture(scope="module")
def guest(make_guest: Callable[..., Guest]) -> Iterator[Guest]:
    g = make_guest("chain", [DiskSpec("vda", size=32 * MiB)], agent=False)
    g.start()
    yield g
    g.remove()


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_vault(tmp_path_factory.mktemp("chain") / "vault")


def _full(doc: dict[str, Any], target: str, why: str) -> None:
    d = disk(doc, target)
    assert (d["read_mode"], d["change_mode"]) == ("libvirt-pull-full", "full-read-hash"), d
    assert d["tracking"]["chain"] == "new" and reason(doc, target) == why, d["tracking"]


def _incremental(doc: dict[str, Any], target: str) -> None:
    d = disk(doc, target)
    assert d["read_mode"] == "libvirt-pull-dirty-bitmap", d
    assert d["tracking"]["chain"] == "continued" and reason(doc, target) is None


def _disk_xml(path: Path, fmt: str, target: str) -> str:
    return (
        f"<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/>"
        f"<source file='{path}'/><target dev='{target}' bus='virtio'/></disk>"
    )


def test_first_full_requested_checkpoint_missing(guest: Guest, vault: Path, tmp_path: Path) -> None:
    g = guest
    g.write("vda", 1, 2)
    doc = backup(vault, g, "--consistency", "auto")
    _full(doc, "vda", "first-backup")
    assert doc["consistency"] == "crash"  # no guest agent: auto falls back
    g.write("vda", 5)
    _full(backup(vault, g, "--full"), "vda", "full-requested")
    _incremental(backup(vault, g), "vda")

    for cp in g.dom.listAllCheckpoints():
        cp.delete()
    g.write("vda", 7)
    state = g.sha("vda")
    doc = backup(vault, g)
    _full(doc, "vda", "checkpoint-missing")
    assert disk(doc, "vda")["stats"]["chunks_new"] == 1  # read in full, only new chunks stored
    assert restored_sha(vault, doc["point"], "vda", tmp_path) == state
    _incremental(backup(vault, g), "vda")


def test_parent_not_in_vault(guest: Guest, vault: Path, tmp_path: Path) -> None:
    other = init_vault(tmp_path / "other")
    backup(other, guest)  # its checkpoint replaces the one this vault's last point recorded
    guest.write("vda", 9)
    _full(backup(vault, guest), "vda", "parent-not-in-vault")
    _incremental(backup(vault, guest), "vda")


def test_disk_added_resized_removed_and_raw(guest: Guest, vault: Path, tmp_path: Path) -> None:
    g, dom = guest, guest.dom
    vdb = g.folder / "added-vdb.qcow2"
    make_disk(vdb, DiskSpec("vdb", size=16 * MiB))
    dom.attachDeviceFlags(_disk_xml(vdb, "qcow2", "vdb"), LIVE)
    doc = backup(vault, g)
    _full(doc, "vda", "disk-added")
    _full(doc, "vdb", "disk-added")
    _incremental(backup(vault, g), "vdb")

    dom.blockResize("vdb", 24 * MiB, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
    doc = backup(vault, g)
    _full(doc, "vdb", "disk-resized")
    assert disk(doc, "vdb")["virtual_size"] == 24 * MiB
    _incremental(backup(vault, g), "vdb")

    raw = g.folder / "added-vdc.img"
    make_disk(raw, DiskSpec("vdc", fmt="raw", size=8 * MiB))
    dom.attachDeviceFlags(_disk_xml(raw, "raw", "vdc"), LIVE)
    backup(vault, g)
    g.write("vda", 11)
    state = g.sha("vda")
    doc = backup(vault, g)
    _incremental(doc, "vda")
    _full(doc, "vdc", "raw-disk")  # no persistent bitmaps: read in full every time
    assert disk(doc, "vdc")["tracking"].get("checkpoint") is None
    assert restored_sha(vault, doc["point"], "vda", tmp_path) == state

    dom.detachDeviceFlags(_disk_xml(vdb, "qcow2", "vdb"), libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    g.stop()  # a live detach needs the guest's help; a cold one does not
    g.start()
    doc = backup(vault, g)
    _full(doc, "vda", "disk-removed")
    assert [d["target"] for d in doc["disks"]] == ["vda", "vdc"]
