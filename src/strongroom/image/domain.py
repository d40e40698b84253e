"""libvirt domain XML: the disks a VM uses, and the rewrites restores need.

Parsing and rewriting use :mod:`xml.etree.ElementTree` on trusted input (the administrator's
own domain definitions).  Only ``<disk device='disk'>`` with a ``file`` or ``block`` source is
backed up; CD-ROMs, floppies, LUNs and network or volume disks are reported as skipped.
"""

from __future__ import annotations

import os
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Final

from strongroom.errors import ImageError
from strongroom.records import dataclass

__all__ = [
    "DomainDisk",
    "DomainInfo",
    "SkippedDisk",
    "attach_disk",
    "free_target",
    "new_mac",
    "parse_domain",
    "rewrite_as_new",
    "target_prefix",
]

_BUS_PREFIX: Final = {
    "virtio": "vd",
    "scsi": "sd",
    "sata": "sd",
    "usb": "sd",
    "ide": "hd",
    "fdc": "fd",
    "xen": "xvd",
}


@dataclass(frozen=True)
class DomainDisk:
    """A disk the backup reads: its target device, bus, image path and format."""

    target: str
    bus: str
    source: Path
    format: str
    source_type: str


@dataclass(frozen=True)
class SkippedDisk:
    target: str
    device: str
    reason: str


@dataclass(frozen=True)
class DomainInfo:
    name: str
    uuid: str
    disks: list[DomainDisk]
    skipped: list[SkippedDisk]


def _parse(xml: bytes, where: str) -> ET.Element:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ImageError(f"{where}: not valid XML ({exc})") from None
    if root.tag != "domain":
        raise ImageError(f"{where}: not a libvirt domain definition (root is <{root.tag}>)")
    return root


def _disk_source(disk: ET.Element) -> tuple[str, str | None]:
    kind = disk.get("type", "file")
    src = disk.find("source")
    if src is None:
        return kind, None
    if kind == "file":
        return kind, src.get("file")
    if kind == "block":
        return kind, src.get("dev")
    return kind, None


def _one_disk(disk: ET.Element, base: Path) -> DomainDisk | SkippedDisk:
    device = disk.get("device", "disk")
    target_el = disk.find("target")
    target = target_el.get("dev", "?") if target_el is not None else "?"
    bus = target_el.get("bus", "") if target_el is not None else ""
    kind, path = _disk_source(disk)
    if device != "disk":
        return SkippedDisk(target, device, f"{device} (only device='disk' is backed up)")
    if kind not in ("file", "block"):
        return SkippedDisk(target, device, f"type='{kind}' disks are not supported offline")
    if not path:
        return SkippedDisk(target, device, "no source (empty drive)")
    driver = disk.find("driver")
    fmt = (driver.get("type") if driver is not None else None) or "raw"
    if fmt == "aio":  # some old definitions put the driver name here
        fmt = "raw"
    source = Path(path)
    if not source.is_absolute():
        source = base / source
    return DomainDisk(target, bus or _guess_bus(target), source, fmt, kind)


def _guess_bus(target: str) -> str:
    for prefix, bus in (("xvd", "xen"), ("vd", "virtio"), ("sd", "scsi"), ("hd", "ide")):
        if target.startswith(prefix):
            return bus
    return "virtio"


def parse_domain(xml: bytes, where: str = "domain XML", base: Path | None = None) -> DomainInfo:
    """Name, UUID and disks of a domain; relative disk paths resolve against ``base``."""
    root = _parse(xml, where)
    name = (root.findtext("name") or "").strip()
    if not name:
        raise ImageError(f"{where}: the domain has no <name>")
    disks: list[DomainDisk] = []
    skipped: list[SkippedDisk] = []
    for disk in root.iterfind("./devices/disk"):
        found = _one_disk(disk, base or Path.cwd())
        (disks if isinstance(found, DomainDisk) else skipped).append(found)  # type: ignore[arg-type]
    targets = [d.target for d in disks]
    duplicates = {t for t in targets if targets.count(t) > 1}
    if duplicates:
        raise ImageError(f"{where}: target {sorted(duplicates)[0]!r} is used by two disks")
    return DomainInfo(name, (root.findtext("uuid") or "").strip(), disks, skipped)


def new_mac() -> str:
    """A random locally administered MAC in qemu/KVM's 52:54:00 range."""
    tail = os.urandom(3)
    return "52:54:00:" + ":".join(f"{b:02x}" for b in tail)


def _serialize(root: ET.Element) -> bytes:
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode").encode("utf-8") + b"\n"


def rewrite_as_new(xml: bytes, name: str, disk_paths: dict[str, tuple[Path, str]]) -> bytes:
    """The domain as a new VM: new name, UUID, MACs; disks at ``disk_paths[target]``.

    ``disk_paths`` maps a target device to (new image path, format).  Backing chains are
    dropped (restored images are flat); a ``<nvram>`` path is dropped so libvirt makes a
    fresh copy from its template instead of sharing the original's.
    """
    root = _parse(xml, "domain XML")
    _set_text(root, "name", name)
    _set_text(root, "uuid", str(uuid.uuid4()))
    for mac in root.iterfind("./devices/interface/mac"):
        mac.set("address", new_mac())
    for iface in root.iterfind("./devices/interface"):
        target = iface.find("target")
        if target is not None:
            iface.remove(target)  # vnetN names belong to the running original
    for os_el in root.iterfind("os"):
        for nvram in os_el.findall("nvram"):
            nvram.text = None
            for attr in [a for a in nvram.attrib if a != "template"]:
                del nvram.attrib[attr]
    for disk in root.iterfind("./devices/disk"):
        target_el = disk.find("target")
        dev = target_el.get("dev") if target_el is not None else None
        if dev is not None and dev in disk_paths:
            path, fmt = disk_paths[dev]
            _point_disk_at(disk, path, fmt)
    return _serialize(root)


def point_disks_at(xml: bytes, disk_paths: dict[str, tuple[Path, str]]) -> bytes:
    """The same domain (name, UUID, MACs kept) with disks at ``disk_paths[target]``."""
    root = _parse(xml, "domain XML")
    for disk in root.iterfind("./devices/disk"):
        target_el = disk.find("target")
        dev = target_el.get("dev") if target_el is not None else None
        if dev is not None and dev in disk_paths:
            _point_disk_at(disk, *disk_paths[dev])
    return _serialize(root)


def _set_text(root: ET.Element, tag: str, text: str) -> None:
    el = root.find(tag)
    if el is None:
        el = ET.SubElement(root, tag)
    el.text = text


def _point_disk_at(disk: ET.Element, path: Path, fmt: str) -> None:
    disk.set("type", "file")
    for tag in ("source", "backingStore"):
        for el in disk.findall(tag):
            disk.remove(el)
    driver = disk.find("driver")
    if driver is None:
        driver = ET.Element("driver", {"name": "qemu"})
        disk.insert(0, driver)
    driver.set("type", fmt)
    source = ET.Element("source", {"file": str(path)})
    disk.insert(list(disk).index(driver) + 1, source)


def target_prefix(bus: str) -> str:
    return _BUS_PREFIX.get(bus, "vd")


def _letters(n: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa (libvirt's disk naming)."""
    out = ""
    n += 1
    while n:
        n, rem = divmod(n - 1, 26)
        out = chr(ord("a") + rem) + out
    return out


def _next_free_target(root: ET.Element, prefix: str) -> str:
    used = {
        t.get("dev", "")
        for t in root.iterfind("./devices/disk/target")
        if t.get("dev", "").startswith(prefix)
    }
    n = 0
    while f"{prefix}{_letters(n)}" in used:
        n += 1
    return f"{prefix}{_letters(n)}"


def free_target(xmls: list[bytes], bus: str) -> str:
    """The first target of ``bus``'s prefix no disk of any of these domain XMLs uses."""
    prefix = target_prefix(bus)
    used = {
        t.get("dev", "")
        for xml in xmls
        for t in _parse(xml, "domain XML").iterfind("./devices/disk/target")
    }
    n = 0
    while f"{prefix}{_letters(n)}" in used:
        n += 1
    return f"{prefix}{_letters(n)}"


def attach_disk(xml: bytes, path: Path, fmt: str, bus: str, where: str) -> tuple[bytes, str]:
    """Add a file disk at the next free target of ``bus``; the new XML and the target."""
    root = _parse(xml, where)
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    target = _next_free_target(root, target_prefix(bus))
    disk = ET.Element("disk", {"type": "file", "device": "disk"})
    ET.SubElement(disk, "driver", {"name": "qemu", "type": fmt})
    ET.SubElement(disk, "source", {"file": str(path)})
    ET.SubElement(disk, "target", {"dev": target, "bus": bus})
    last_disk = max((i for i, el in enumerate(devices) if el.tag == "disk"), default=-1)
    devices.insert(last_disk + 1, disk)
    return _serialize(root), target
