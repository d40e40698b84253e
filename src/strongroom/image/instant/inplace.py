"""``restore vm POINT --instant --in-place``: the point's own domain, started on overlays.

The domain keeps its name and UUID; its definition now names qcow2 overlays
(``DIR/NAME-<target>.instant.qcow2``, DIR: ``--disk-dir``, else the folder of each disk the
domain had) backed by the export.  **The disks it had are never written**: the guest writes
into the overlays, ``finalize`` pulls the rest of the point into them (libvirt switches the
definition to the flat overlays when each pull completes), and only then are the old disk
files deleted.  ``abort`` defines the saved original definition again (disks untouched).
Like ``restore vm --in-place``, a running domain is refused unless ``force`` (power off);
the checkpoints' metadata and strongroom's "read in full next time" mark change only at
finalize, so an abort leaves the domain exactly as it was (shut off).
"""

from __future__ import annotations

import contextlib
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from strongroom.errors import ImageError
from strongroom.image.chunkcache import open_point_disks
from strongroom.image.instant.serve import export_uri
from strongroom.image.instant.state import InstantDisk, InstantRecord, check_name
from strongroom.image.instant.supervise import choose_supervisor, start_export, stop_export
from strongroom.image.libvirt.checkpoints import checkpoints, delete_checkpoint
from strongroom.image.libvirt.conn import Connection, libvirt_errors
from strongroom.image.libvirt.instant import (
    create_overlay,
    define_instant,
    instant_xml_in_place,
    power_off,
    qemu_owner,
    restore_original,
)
from strongroom.image.libvirt.meta import set_reset
from strongroom.image.records import VMRecord, load_point
from strongroom.image.restore import check_new_target
from strongroom.vault import RecoveryPoint, Vault

__all__ = ["abort_in_place", "after_finalize", "start_in_place"]


def _current_sources(xml: str | None) -> dict[str, str]:
    """target -> file of the domain's current disks."""
    if xml is None:
        return {}
    out = {}
    for disk in ET.fromstring(xml).iterfind("./devices/disk"):
        target, source = disk.find("target"), disk.find("source")
        if target is not None and source is not None and source.get("file"):
            out[target.get("dev") or ""] = source.get("file") or ""
    return out


def _plan(vm: VMRecord, original: str | None, disk_dir: Path | None) -> dict[str, Path]:
    sources = _current_sources(original)
    overlays = {}
    for d in vm.disks:
        folder = (disk_dir or Path(sources.get(d.target) or d.source).parent).absolute()
        if not folder.is_dir():
            raise ImageError(f"disk folder {folder} does not exist (give --disk-dir)")
        overlays[d.target] = folder / f"{vm.name}-{d.target}.instant.qcow2"
        check_new_target(overlays[d.target], force=False)
    return overlays


def _original(conn: Connection, vm: VMRecord, force: bool) -> tuple[Any, str | None]:
    dom = conn.find(vm.name, vm.uuid)
    if dom is None:
        return None, None
    if str(dom.UUIDString()) != vm.uuid:
        raise ImageError(
            f"domain {vm.name} now has UUID {dom.UUIDString()}, the point's is {vm.uuid}: "
            "undefine it first, or restore with --as-new"
        )
    if dom.isActive() and not force:
        power_off(dom, False)  # the one-line refusal
    lv = conn.lv
    with libvirt_errors(f"cannot read the definition of {vm.name}"):
        xml = str(dom.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE | lv.VIR_DOMAIN_XML_SECURE))
    return dom, xml


def start_in_place(
    vault: Vault,
    point: RecoveryPoint,
    *,
    location: str,
    passphrase: str,
    disk_dir: Path | None,
    uri: str | None,
    force: bool,
) -> InstantRecord:
    """Serve ``point`` and start its own domain on overlays (see the module docstring)."""
    if point.manifest.kind != "vm":
        raise ImageError(f"point {point.short_id} is a {point.manifest.kind} point, not a VM")
    with vault.read_lock():
        vm = load_point(vault, point)
        open_point_disks(vault, point, None)
    check_name(vm.name)
    with Connection(uri) as conn:
        dom, original = _original(conn, vm, force)
        overlays = _plan(vm, original, disk_dir)
        record = InstantRecord(vm.name, point.point_id, location, conn.uri)
        record.supervisor, record.in_place, record.original_xml = (
            choose_supervisor(),
            True,
            original,
        )
        record.replaced = sorted(set(_current_sources(original).values()))
        record.disks = [
            InstantDisk(d.target, str(overlays[d.target]), d.virtual_size) for d in vm.disks
        ]
        record.create_folder(qemu_owner(conn))
        try:
            record.save()
            start_export(record, passphrase)
            for d in record.disks:
                uri_ = export_uri(d.target, record.socket, None)
                create_overlay(Path(d.overlay), uri_, d.virtual_size)
            if dom is not None:
                power_off(dom, force)
            xml = instant_xml_in_place(vm.xml, overlays, record.socket)
            define_instant(conn, xml, undefine=original is None)
        except BaseException:
            _undo(conn, record)
            raise
    return record


def _undo(conn: Connection, record: InstantRecord) -> None:
    restore_original(conn, record.name, record.original_xml)
    stop_export(record)
    for d in record.disks:
        with contextlib.suppress(FileNotFoundError):
            Path(d.overlay).unlink()
    shutil.rmtree(record.folder, ignore_errors=True)


def abort_in_place(conn: Connection, record: InstantRecord) -> None:
    """The original definition back, the overlays, export and state gone; disks untouched."""
    _undo(conn, record)


def after_finalize(conn: Connection, record: InstantRecord) -> list[str]:
    """The domain runs on the flat overlays: forget what described the old disks, delete
    them.  The old disk files removed."""
    dom = conn.find(record.name)
    assert dom is not None  # finalize_domain found it
    for cp in checkpoints(dom):  # their bitmaps are in the old disks
        delete_checkpoint(dom, cp.name, metadata_only=True)
    set_reset(dom, "restored-in-place", record.point)
    lv = conn.lv
    used = set(_current_sources(str(dom.XMLDesc(0))).values())
    used |= set(_current_sources(str(dom.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE))).values())
    removed = []
    for path in record.replaced:
        if path not in used and Path(path).is_file():
            Path(path).unlink()
            removed.append(path)
    return removed
