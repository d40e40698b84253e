"""Shut-off domains: read through qemu-nbd, with ``--bitmap`` for the dirty extents of a qcow2
disk since the last checkpoint; the chain breaks when a bitmap is gone, the domain is
redefined or a disk moved."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import libvirt

from ._guest import DiskSpec, Guest, MiB, run
from ._helpers import backup, disk, image_sha, init_vault, reason, restored_sha

UNDEFINE = libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA


@pytest.fixture(scope="module")
def guest(make_guest: Callable[..., Guest]) -> Iterator[Guest]:
    specs = [DiskSpec("vda", size=48 * MiB), DiskSpec("vdb", size=32 * MiB)]
    g = make_guest("off", specs, agent=False)
    yield g
    g.remove()


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_vault(tmp_path_factory.mktemp("off") / "vault")


def test_offline_incremental_reads_only_dirty_extents(
    guest: Guest, vault: Path, tmp_path: Path
) -> None:
    g = guest
    g.start()
    g.write("vda", 0, 4)
    p1 = backup(vault, g)
    checkpoint = disk(p1, "vda")["tracking"]["checkpoint"]
    g.write("vda", 20)
    g.write("vdb", 3)
    g.stop()
    doc = backup(vault, g)
    assert doc["consistency"] == "offline"
    for target in ("vda", "vdb"):
        d = disk(doc, target)
        assert d["read_mode"] == "qemu-nbd-bitmap" and d["change_mode"] == "dirty-bitmap", d
        assert d["tracking"]["base_checkpoint"] == checkpoint
        assert d["stats"]["bytes_read"] == MiB
        got = restored_sha(vault, doc["point"], target, tmp_path)
        assert got == image_sha(g.disk_path(target), "qcow2", tmp_path)
    assert doc["parent"] == p1["point"]

    # a missing bitmap: that disk is read in full, the other continues
    run("qemu-img", "bitmap", "--remove", g.disk_path("vda"), checkpoint)
    doc = backup(vault, g)
    assert reason(doc, "vda") == "bitmap-missing"
    assert disk(doc, "vda")["read_mode"] == "nbd-block-status"
    assert disk(doc, "vdb")["read_mode"] == "qemu-nbd-bitmap"


def test_running_backup_continues_an_offline_one_and_bitmap_missing_live(
    guest: Guest, vault: Path, tmp_path: Path
) -> None:
    g = guest
    g.start()
    g.write("vdb", 5)
    doc = backup(vault, g)
    # libvirt finds vda's bitmap gone when the job starts: every disk is read in full
    assert reason(doc, "vda") == "bitmap-missing" == reason(doc, "vdb")
    g.write("vda", 30)
    state = g.sha("vda")
    doc = backup(vault, g)
    assert disk(doc, "vda")["read_mode"] == "libvirt-pull-dirty-bitmap"
    assert disk(doc, "vda")["stats"]["bytes_read"] == MiB
    assert restored_sha(vault, doc["point"], "vda", tmp_path) == state
    g.stop()


def test_domain_redefined_and_disk_moved(guest: Guest, vault: Path, conn: object) -> None:
    g = guest
    original = g.disk_path("vdb")
    moved = original.with_name("moved-vdb.qcow2")
    os.rename(original, moved)
    g.disks = [(s, moved if s.target == "vdb" else p) for s, p in g.disks]
    xml = g.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).replace(str(original), str(moved))
    g.conn.defineXML(xml)  # same UUID: the checkpoints stay
    doc = backup(vault, g)
    assert reason(doc, "vda") == "disk-moved" == reason(doc, "vdb")

    old_uuid = g.dom.UUIDString()
    g.dom.undefineFlags(UNDEFINE)
    g.conn.defineXML(xml.replace(old_uuid, "0e0e0e0e-1111-2222-3333-444444444444"))
    doc = backup(vault, g)
    assert reason(doc, "vda") == "domain-redefined"
    assert doc["consistency"] == "offline"
