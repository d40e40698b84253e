"""The libvirt provider's pure parts without a daemon: chain decisions for every reason,
the XML strongroom sends and reads, the as-new rewrite, the lazy import, CLI usage."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.image.libvirt.chain import DiskFacts, DomainFacts, decide
from strongroom.image.libvirt.domxml import (
    BackupDisk,
    CheckpointInfo,
    agent_state,
    backup_xml,
    checkpoint_xml,
    dac_owner,
    parse_checkpoint,
    parse_reset,
    reset_xml,
    rewrite_for_libvirt,
    xml_attr,
)
from strongroom.vault import PointManifest, RecoveryPoint
from tests.image._vm import cli

HOST = {"uuid": "", "name": "host-a"}
UUID = "11111111-2222-3333-4444-555555555555"
CP = CheckpointInfo("strongroom-2", 2, None, {"vda": "strongroom-2", "vdb": "strongroom-2"})


def _point(pid: str, checkpoint: str | None, **change: Any) -> RecoveryPoint:
    disks = [
        {"target": "vda", "source": "/i/a.qcow2", "format": "qcow2", "virtual_size": 100},
        {"target": "vdb", "source": "/i/b.img", "format": "raw", "virtual_size": 50},
    ]
    meta = {
        "uuid": change.get("uuid", UUID),
        "disks": change.get("disks", disks),
        "libvirt": {"checkpoint": checkpoint, "host": change.get("host", HOST)},
    }
    return RecoveryPoint(pid, PointManifest(kind="vm", source="web", roots=[], meta=meta))


def _facts(**change: Any) -> DomainFacts:
    disks = {"vda": DiskFacts("/i/a.qcow2", "qcow2", 100), "vdb": DiskFacts("/i/b.img", "raw", 50)}
    return DomainFacts(
        name="web",
        uuid=change.get("uuid", UUID),
        host=change.get("host", HOST),
        disks=change.get("disks", disks),
        checkpoints=change.get("checkpoints", [CP]),
        reset=change.get("reset"),
    )


def test_chain_continues_with_per_disk_reasons() -> None:
    points = [_point("p1", "strongroom-1"), _point("p2", "strongroom-2"), _point("p3", "x")]
    chain = decide(points[:2], _facts(), full=False)
    assert chain.reason is None and chain.base is points[1] and chain.checkpoint is CP
    assert chain.disk("vda") is None
    assert chain.disk("vdb") == ("raw-disk", "raw images have no persistent bitmaps")
    no_bitmap = CheckpointInfo("strongroom-2", 2, None, {"vdb": "x"})
    assert decide(points[:2], _facts(checkpoints=[no_bitmap]), full=False).disk("vda") == (
        "bitmap-missing",
        "checkpoint strongroom-2 has no bitmap for vda",
    )


@pytest.mark.parametrize(
    ("points", "facts", "full", "want"),
    [
        ([], {}, False, "first-backup"),
        (["strongroom-2"], {}, True, "full-requested"),
        (["strongroom-2"], {"reset": ("restored-in-place", "abc")}, False, "restored-in-place"),
        ([None], {"checkpoints": []}, False, "no-checkpoint"),
        (["strongroom-2"], {"checkpoints": []}, False, "checkpoint-missing"),
        (["strongroom-1"], {}, False, "parent-not-in-vault"),
        (["strongroom-2"], {"uuid": "other"}, False, "domain-redefined"),
        (["strongroom-2"], {"host": {"uuid": "", "name": "host-b"}}, False, "host-changed"),
        (["strongroom-2"], {"disks": {}}, False, "disk-removed"),
    ],
)
def test_chain_reasons(
    points: list[str | None], facts: dict[str, Any], full: bool, want: str
) -> None:
    recorded = [_point(f"p{n}", cp) for n, cp in enumerate(points)]
    chain = decide(recorded, _facts(**facts), full=full)
    assert chain.reason == want and chain.disk("vda") is not None
    assert chain.disk("vda")[0] == want  # type: ignore[index]


@pytest.mark.parametrize(
    ("disks", "want"),
    [
        ({"vda": ("/i/a.qcow2", "qcow2", 100)}, "disk-removed"),
        ({"vdc": ("/i/c", "qcow2", 1)}, "disk-added"),
        ({"vda": ("/i/a.qcow2", "qcow2", 200)}, "disk-resized"),
        ({"vda": ("/j/a.qcow2", "qcow2", 100)}, "disk-moved"),
        ({"vda": ("/i/a.qcow2", "raw", 100)}, "disk-format-changed"),
    ],
)
def test_disk_changes(disks: dict[str, tuple[str, str, int]], want: str) -> None:
    now = {"vda": DiskFacts("/i/a.qcow2", "qcow2", 100), "vdb": DiskFacts("/i/b.img", "raw", 50)}
    now |= {t: DiskFacts(*v) for t, v in disks.items()}
    if want == "disk-removed":
        del now["vdb"]
    chain = decide([_point("p", "strongroom-2")], _facts(disks=now), full=False)
    assert chain.reason == want


def test_host_uuid_wins_over_name() -> None:
    then = {"uuid": "aaaa", "name": "same"}
    chain = decide(
        [_point("p", "strongroom-2", host=then)],
        _facts(host={"uuid": "bbbb", "name": "same"}),
        full=False,
    )
    assert chain.reason == "host-changed"


def test_backup_and_checkpoint_xml() -> None:
    disks = [BackupDisk("vda", "strongroom-1", True), BackupDisk("vdb", None, False)]
    root = ET.fromstring(backup_xml(Path("/p/nbd.sock"), Path("/p"), disks, ["sda"]))
    assert root.get("mode") == "pull"
    assert root.find("server").attrib == {"transport": "unix", "socket": "/p/nbd.sock"}  # type: ignore[union-attr]
    got = {
        d.get("name"): (d.get("backup"), d.get("backupmode"), d.get("incremental"))
        for d in root.iter("disk")
    }
    assert got == {
        "vda": ("yes", "incremental", "strongroom-1"),
        "vdb": ("yes", "full", None),
        "sda": ("no", None, None),
    }
    assert root.find("./disks/disk/scratch").get("file") == "/p/vda.scratch"  # type: ignore[union-attr]
    cp = ET.fromstring(checkpoint_xml("strongroom-2", disks, ["sda"]))
    assert {d.get("name"): d.get("checkpoint") for d in cp.iter("disk")} == {
        "vda": "bitmap",
        "vdb": "no",
        "sda": "no",
    }
    parsed = parse_checkpoint(
        "<domaincheckpoint><name>c</name><parent><name>b</name></parent>"
        "<creationTime>7</creationTime><disks><disk name='vda' checkpoint='bitmap' bitmap='c'/>"
        "<disk name='vdb' checkpoint='no'/></disks></domaincheckpoint>"
    )
    assert parsed == CheckpointInfo("c", 7, "b", {"vda": "c"})


def test_live_facts_and_metadata() -> None:
    live = """<domain><name>x</name><devices><channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/></channel>
    </devices><seclabel type='dynamic' model='dac' relabel='yes'>
    <label>+64055:+107</label></seclabel></domain>"""
    assert agent_state(live) == "connected" and dac_owner(live) == (64055, 107)
    assert agent_state("<domain><devices/></domain>") is None
    assert (
        dac_owner("<domain><seclabel model='dac'><label>+0:+0</label></seclabel></domain>") is None
    )
    assert parse_reset(reset_xml("restored-in-place", "abc")) == ("restored-in-place", "abc")
    assert parse_reset(None) is None


def test_rewrite_for_libvirt() -> None:
    xml = b"""<domain><name>web</name><metadata>
      <sr:strongroom xmlns:sr='https://strongroom.dev/xmlns/libvirt/1'><chain reset='x'/>
      </sr:strongroom>
      <other xmlns='urn:other'/></metadata><devices>
      <serial type='unix'><source mode='bind' path='/run/web-console.sock'/></serial>
      <console type='unix'><source mode='bind' path='/run/con.sock'/></console>
      <channel type='unix'><source mode='bind' path='/var/lib/x/org.qemu.guest_agent.0'/>
        <target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    </devices></domain>"""
    root = ET.fromstring(rewrite_for_libvirt(xml, "web", "copy"))
    assert [c.tag for c in root.find("metadata")] == ["{urn:other}other"]  # type: ignore[union-attr]
    assert root.find("./devices/serial/source").get("path") == "/run/copy-console.sock"  # type: ignore[union-attr]
    assert root.find("./devices/console/source").get("path") == "/run/copy-con.sock"  # type: ignore[union-attr]
    assert root.find("./devices/channel/source").get("path") is None  # type: ignore[union-attr]


def test_strongroom_works_without_libvirt_python(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['libvirt'] = None\n"
        "from strongroom.cli.main import main\n"
        "import strongroom.image.libvirt\n"
        "sys.exit(main(['vm', 'list']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "libvirt-python is not installed" in proc.stderr


def test_backup_vm_usage() -> None:
    assert cli("backup", "vm").code == 2
    assert cli("backup", "vm", "web", "--xml", "web.xml").code == 2
    assert cli("backup", "vm", "--xml", "web.xml", "--full").code == 2
    assert cli("backup", "vm", "web", "--consistency", "maybe").code == 2


# every character XML 1.0 allows (no other control characters, no surrogates)
_xml_text = st.text(
    st.characters(
        codec="utf-8",
        exclude_characters=[
            *(chr(c) for c in range(32) if c not in (9, 10, 13)),
            "\ufffe",
            "\uffff",
        ],
    )
)


@given(_xml_text)
@settings(max_examples=200, deadline=None)
def test_attribute_values_survive_an_xml_parser(value: str) -> None:
    """What strongroom puts in the XML it sends libvirt (disk names, paths, checkpoint names)
    reads back exactly, quotes, ampersands, tabs and newlines included."""
    assert ET.fromstring(f"<a b={xml_attr(value)}/>").get("b") == value
