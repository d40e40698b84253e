"""The libvirt side of instant recovery: a domain running on overlays backed by the export.

Each disk gets a qcow2 overlay whose backing file is the point's NBD export
(``nbd+unix:///vda?socket=...``, format raw); the domain XML says the same with an explicit
``<backingStore type='network'>``, so libvirt never probes it.  Every guest write lands in
the overlay.  Finalizing pulls the remaining data into the overlays while the domain runs
(``blockPull``: libvirt then drops the backing from the live and the persistent definition
and qemu from the image header); for a shut-off domain ``qemu-img rebase -b ''`` does the
same.  Either can be interrupted and started again: data already pulled stays.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Final

from strongroom.errors import ImageError
from strongroom.image.domain import point_disks_at, rewrite_as_new
from strongroom.image.libvirt.conn import Connection, is_active, libvirt_errors, state_name
from strongroom.image.libvirt.domxml import rewrite_for_libvirt

__all__ = [
    "create_overlay",
    "define_instant",
    "finalize_domain",
    "instant_xml",
    "instant_xml_in_place",
    "power_off",
    "qemu_owner",
    "remove_domain",
    "restore_original",
]

_JOB_POLL: Final = 0.2


_owners: dict[tuple[str, str], tuple[int, int] | None] = {}


def qemu_owner(conn: Connection, domain_type: str = "qemu") -> tuple[int, int] | None:
    """(uid, gid) qemu runs as for ``domain_type`` (the DAC base label), or None if ours.

    libvirt labels local images for qemu but not the unix socket of an NBD source, so the
    socket's folder is given to this user.  (Reading the capabilities takes seconds: cached.)
    """
    if os.geteuid() != 0:
        return None
    key = (conn.uri, domain_type)
    if key not in _owners:
        _owners[key] = _read_owner(conn, domain_type)
    return _owners[key]


def _read_owner(conn: Connection, domain_type: str) -> tuple[int, int] | None:
    with libvirt_errors("cannot read the host's capabilities"):
        caps = ET.fromstring(conn.conn.getCapabilities())
    for model in caps.iterfind("./host/secmodel"):
        if (model.findtext("model") or "") != "dac":
            continue
        for label in model.iterfind("baselabel"):
            if label.get("type") == domain_type and label.text:
                uid, gid = (int(x.lstrip("+")) for x in label.text.split(":"))
                return (uid, gid) if (uid, gid) != (0, 0) else None
    return None


def create_overlay(path: Path, backing_uri: str, size: int) -> None:
    """A new qcow2 at ``path`` over the raw export at ``backing_uri`` (not opened now)."""
    command = [
        "qemu-img", "create", "-q", "-f", "qcow2", "-u",
        "-F", "raw", "-b", backing_uri, str(path), str(size),
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImageError(f"cannot create overlay {path}: {proc.stderr.strip()}")
    path.chmod(0o600)


def _backing(target: str, socket: Path) -> ET.Element:
    store = ET.Element("backingStore", {"type": "network"})
    ET.SubElement(store, "format", {"type": "raw"})
    source = ET.SubElement(store, "source", {"protocol": "nbd", "name": target})
    ET.SubElement(source, "host", {"transport": "unix", "socket": str(socket)})
    ET.SubElement(store, "backingStore")
    return store


def instant_xml(
    xml: bytes, old_name: str, name: str, overlays: dict[str, Path], socket: Path
) -> bytes:
    """The point's domain as ``name`` on the overlays, each backed by its export."""
    paths = {t: (p, "qcow2") for t, p in overlays.items()}
    root = ET.fromstring(rewrite_for_libvirt(rewrite_as_new(xml, name, paths), old_name, name))
    return _with_backing(root, overlays, socket)


def instant_xml_in_place(xml: bytes, overlays: dict[str, Path], socket: Path) -> bytes:
    """The point's domain itself (same name, UUID, MACs) on the overlays."""
    paths = {t: (p, "qcow2") for t, p in overlays.items()}
    return _with_backing(ET.fromstring(point_disks_at(xml, paths)), overlays, socket)


def _with_backing(root: ET.Element, overlays: dict[str, Path], socket: Path) -> bytes:
    for disk in root.iterfind("./devices/disk"):
        target = disk.find("target")
        dev = target.get("dev") if target is not None else None
        if dev in overlays:
            source = disk.find("source")
            assert source is not None
            disk.insert(list(disk).index(source) + 1, _backing(dev, socket))
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode").encode() + b"\n"


def define_instant(conn: Connection, xml: bytes, *, undefine: bool = True) -> Any:
    """Define and start the domain; a failed start undefines it again (if ``undefine``)."""
    dom = conn.define(xml)
    try:
        with libvirt_errors(f"cannot start {dom.name()}"):
            dom.create()
    except BaseException:
        if undefine:
            with contextlib.suppress(Exception):
                dom.undefine()
        raise
    return dom


def remove_domain(conn: Connection, name: str) -> bool:
    """Power off and undefine ``name``; False when there is no such domain."""
    dom = conn.find(name)
    if dom is None:
        return False
    with libvirt_errors(f"cannot remove {name}"):
        if is_active(dom):
            dom.destroy()
        dom.undefineFlags(conn.lv.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
    return True


def power_off(dom: Any, force: bool) -> None:
    """What ``restore vm --in-place`` does with a running domain: refuse, or with force."""
    if not is_active(dom):
        return
    if not force:
        raise ImageError(
            f"domain {dom.name()} is running: shut it down first, or use --force to power it off"
        )
    with libvirt_errors(f"cannot power off {dom.name()}"):
        dom.destroy()


def restore_original(conn: Connection, name: str, original_xml: str | None) -> None:
    """Power off the instant domain and define the definition it replaced (or none)."""
    if original_xml is None:
        remove_domain(conn, name)
        return
    dom = conn.find(name)
    if dom is not None and is_active(dom):
        with libvirt_errors(f"cannot power off {name}"):
            dom.destroy()
    with libvirt_errors(f"cannot define {name} as it was"):
        conn.define(original_xml)


def domain_state(conn: Connection, name: str) -> str:
    dom = conn.find(name)
    return state_name(dom) if dom is not None else "undefined"


def _has_nbd_backing(xml: str, target: str) -> bool:
    root = ET.fromstring(xml)
    for disk in root.iterfind("./devices/disk"):
        t = disk.find("target")
        if t is not None and t.get("dev") == target:
            return disk.find("./backingStore/source[@protocol='nbd']") is not None
    return False


def _pull_live(dom: Any, target: str) -> None:
    """blockPull ``target`` (or wait for the pull already running) until it completes."""
    info = dom.blockJobInfo(target, 0)
    if not info:
        dom.blockPull(target, 0, 0)
    while dom.blockJobInfo(target, 0):
        time.sleep(_JOB_POLL)


def _pull_offline(overlay: Path) -> None:
    proc = subprocess.run(
        ["qemu-img", "rebase", "-f", "qcow2", "-b", "", str(overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ImageError(f"cannot pull the data into {overlay}: {proc.stderr.strip()}")


def _drop_backing_config(conn: Connection, dom: Any, targets: list[str]) -> None:
    """Redefine the persistent definition without the NBD backing stores."""
    lv = conn.lv
    root = ET.fromstring(dom.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE | lv.VIR_DOMAIN_XML_SECURE))
    for disk in root.iterfind("./devices/disk"):
        t = disk.find("target")
        store = disk.find("backingStore")
        if t is not None and t.get("dev") in targets and store is not None:
            disk.remove(store)
    conn.define(ET.tostring(root, encoding="unicode"))


def finalize_domain(conn: Connection, name: str, overlays: dict[str, Path]) -> None:
    """Pull every disk's data into its overlay; the domain no longer needs the export."""
    dom = conn.find(name)
    if dom is None:
        raise ImageError(f"domain {name} is gone: abort the instant recovery instead")
    targets = list(overlays)
    if is_active(dom):
        for target in targets:
            if _has_nbd_backing(str(dom.XMLDesc(0)), target):
                with libvirt_errors(f"cannot pull {target} of {name}"):
                    _pull_live(dom, target)
        live = str(dom.XMLDesc(0))
        left = [t for t in targets if _has_nbd_backing(live, t)]
        if left:
            raise ImageError(f"{name}: {', '.join(left)} still read from the export")
    else:
        for overlay in overlays.values():
            _pull_offline(overlay)
    inactive = str(dom.XMLDesc(conn.lv.VIR_DOMAIN_XML_INACTIVE))
    if any(_has_nbd_backing(inactive, t) for t in targets):
        with libvirt_errors(f"cannot update the definition of {name}"):
            _drop_backing_config(conn, dom, targets)
