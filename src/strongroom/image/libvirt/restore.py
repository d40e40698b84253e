"""Restores into libvirt: a domain in place, a domain as a new one, a disk attached to one.

* **In place:** the domain (found by the point's UUID) must be shut off; ``force`` powers it
  off.  Its checkpoints no longer describe the disks once they are rewritten, so their
  metadata goes first, then the disks are written (only the chunks that differ), the
  checkpoints' bitmaps are removed from the images, and the recorded definition is defined
  again.  strongroom's metadata then tells the next backup to read in full.
* **As new:** the disks as ``DIR/NAME-<target>.<ext>`` (DIR: ``disk_dir``, else the folder of
  the original's first disk) and a new domain: new name, UUID, MACs, disk paths and unix
  socket paths; started if asked.  A failed define removes the new images again.
* **A disk:** restored next to the domain's other disks (or to ``to``) and attached at the
  next free target of its bus: to the persistent definition, and live when it runs.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from strongroom.errors import ImageError
from strongroom.image.domain import free_target, parse_domain, rewrite_as_new
from strongroom.image.formats import WRITE_FORMATS, extension_for, format_from_extension
from strongroom.image.libvirt.checkpoints import (
    checkpoints,
    delete_checkpoint,
    remove_image_bitmaps,
)
from strongroom.image.libvirt.conn import Connection, is_active, libvirt_errors
from strongroom.image.libvirt.domxml import rewrite_for_libvirt, xml_attr
from strongroom.image.libvirt.meta import set_reset
from strongroom.image.records import load_point
from strongroom.image.restore import RestoreOptions
from strongroom.image.vaultview import ImageRestoreVault
from strongroom.image.vmrestore import (
    RestoreSummary,
    restore_disk,
    write_disks_as_new,
    write_disks_in_place,
)
from strongroom.vault import RecoveryPoint

__all__ = ["attach_restored_disk", "restore_domain_as_new", "restore_domain_in_place"]


def _power_off(dom: Any, force: bool) -> None:
    if not is_active(dom):
        return
    if not force:
        raise ImageError(
            f"domain {dom.name()} is running: shut it down first, or use --force to power it off"
        )
    with libvirt_errors(f"cannot power off {dom.name()}"):
        dom.destroy()


def _start(dom: Any) -> None:
    with libvirt_errors(f"cannot start {dom.name()}"):
        dom.create()


def _forget_checkpoints(dom: Any) -> list[str]:
    """Drop every checkpoint's metadata (newest first: children before parents)."""
    names = [cp.name for cp in checkpoints(dom)]
    for name in names:
        delete_checkpoint(dom, name, metadata_only=True)
    return names


def restore_domain_in_place(
    vault: ImageRestoreVault,
    point: RecoveryPoint,
    conn: Connection,
    opts: RestoreOptions,
    *,
    start: bool,
) -> RestoreSummary:
    """See the module docstring; the domain is defined again even if it was gone."""
    started = time.monotonic()
    with vault.read_lock():
        vm = load_point(vault, point)
        dom = conn.find(vm.name, vm.uuid)
        if dom is not None and str(dom.UUIDString()) != vm.uuid:
            raise ImageError(
                f"domain {vm.name} now has UUID {dom.UUIDString()}, the point's is {vm.uuid}: "
                "undefine it first, or restore with --as-new"
            )
        names: list[str] = []
        if dom is not None:
            _power_off(dom, opts.force)
            names = _forget_checkpoints(dom)
            set_reset(dom, "restored-in-place", point.point_id)
        _, summary = write_disks_in_place(vault, point, opts)
        for record in vm.disks:
            if record.format == "qcow2" and names:
                remove_image_bitmaps(Path(record.source), set(names))
    dom = conn.define(vm.xml)
    set_reset(dom, "restored-in-place", point.point_id)
    summary.xml_path = None
    if start:
        _start(dom)
    summary.duration = round(time.monotonic() - started, 3)
    return summary


def restore_domain_as_new(
    vault: ImageRestoreVault,
    point: RecoveryPoint,
    conn: Connection,
    name: str,
    opts: RestoreOptions,
    *,
    disk_dir: Path | None = None,
    fmt: str | None = None,
    start: bool = False,
) -> RestoreSummary:
    started = time.monotonic()
    if conn.find(name) is not None:
        raise ImageError(f"a domain named {name!r} already exists at {conn.uri}")
    with vault.read_lock():
        vm, summary, outputs = write_disks_as_new(vault, point, name, disk_dir, fmt, opts)
    xml = rewrite_for_libvirt(rewrite_as_new(vm.xml, name, outputs), vm.name, name)
    try:
        dom = conn.define(xml)
    except BaseException:
        for path, _ in outputs.values():
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    summary.xml_path = None
    if start:
        _start(dom)
    summary.duration = round(time.monotonic() - started, 3)
    return summary


def _disk_xml(path: Path, fmt: str, target: str, bus: str) -> str:
    return (
        "<disk type='file' device='disk'>"
        f"<driver name='qemu' type={xml_attr(fmt)}/>"
        f"<source file={xml_attr(str(path))}/>"
        f"<target dev={xml_attr(target)} bus={xml_attr(bus)}/></disk>"
    )


def attach_restored_disk(
    vault: ImageRestoreVault,
    point: RecoveryPoint,
    which: str | None,
    conn: Connection,
    domain: str,
    opts: RestoreOptions,
    *,
    to: Path | None = None,
    fmt: str | None = None,
) -> RestoreSummary:
    """Restore one disk and attach it to ``domain`` (config, and live when it runs)."""
    lv = conn.lv
    dom = conn.domain(domain)
    with libvirt_errors(f"cannot read the definition of {domain}"):
        running = is_active(dom)
        xmls = [str(dom.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE)).encode()]
        if running:
            xmls.append(str(dom.XMLDesc(0)).encode())
    with vault.read_lock():
        record = load_point(vault, point).disk(which)
    bus = record.bus or "virtio"
    target = free_target(xmls, bus)
    out_fmt = fmt or (format_from_extension(to) if to is not None else None)
    out_fmt = out_fmt or (record.format if record.format in WRITE_FORMATS else "qcow2")
    if to is None:
        disks = parse_domain(xmls[0], domain, base=Path("/")).disks
        if not disks:
            raise ImageError(f"{domain} has no file disk to put the new one next to: give --to")
        to = disks[0].source.parent / f"{domain}-{target}{extension_for(out_fmt)}"
    summary = restore_disk(vault, point, which, to, opts, fmt=out_fmt)
    flags = lv.VIR_DOMAIN_AFFECT_CONFIG | (lv.VIR_DOMAIN_AFFECT_LIVE if running else 0)
    with libvirt_errors(f"restored {to}, but cannot attach it to {domain}"):
        dom.attachDeviceFlags(_disk_xml(to, out_fmt, target, bus), flags)
    summary.attached_to, summary.attached_target = domain, target
    return summary
