"""The three restores: a VM in place, a VM as a new VM, and a single disk (to a path,
optionally attached to another VM's XML).

Every restore loads the point's chunk maps and checks that every chunk they name is in the
vault (and its pack exists) before anything is written; every target is checked (exists?
in use? right size?) before the first disk is written.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, field
from pathlib import Path
from typing import Any

from strongroom.errors import ImageError
from strongroom.image.chunkmap import ChunkMap
from strongroom.image.disks import in_use_message
from strongroom.image.domain import attach_disk, parse_domain, rewrite_as_new
from strongroom.image.formats import (
    WRITE_FORMATS,
    check_write_format,
    extension_for,
    format_from_extension,
    image_info,
    image_lock_error,
)
from strongroom.image.integrity import check_image
from strongroom.image.records import DiskRecord, VMRecord, load_point
from strongroom.image.restore import (
    DiskPlan,
    DiskResult,
    RestoreOptions,
    check_chunks,
    check_new_target,
    is_block_device,
    write_in_place,
    write_new,
)
from strongroom.image.tempfiles import remove_stale_temps, temp_path
from strongroom.image.vaultview import ImageRestoreVault
from strongroom.records import dataclass
from strongroom.vault import RecoveryPoint

__all__ = [
    "RestoreSummary",
    "restore_disk",
    "restore_vm_as_new",
    "restore_vm_in_place",
    "write_disks_as_new",
    "write_disks_in_place",
]


@dataclass
class RestoreSummary:
    point_id: str
    kind: str
    name: str = ""
    disks: list[DiskResult] = field(default_factory=list)
    xml_path: str | None = None
    attached_to: str | None = None
    attached_target: str | None = None
    duration: float = 0.0

    @property
    def bytes_written(self) -> int:
        return sum(d.bytes_written for d in self.disks)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["point"] = doc.pop("point_id")  # the same key as every other --json output
        doc["bytes_written"] = self.bytes_written
        return doc


def _plan(vault: ImageRestoreVault, record: DiskRecord) -> DiskPlan:
    cmap: ChunkMap = record.chunk_map(vault)
    mode = 0o600 if record.file_mode is None else record.file_mode
    return DiskPlan(cmap, record.chunk_size, record.virtual_size, mode)


def write_file_atomic(path: Path, data: bytes) -> None:
    """Temporary name in the same folder, fsync, rename: never a half-written file."""
    remove_stale_temps(path)
    temp = temp_path(path)
    try:
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise ImageError(f"cannot write {path}: {exc.strerror}") from None


def _load_vm(vault: ImageRestoreVault, point: RecoveryPoint) -> VMRecord:
    if point.manifest.kind != "vm":
        raise ImageError(f"point {point.short_id} is a {point.manifest.kind} point, not a VM")
    return load_point(vault, point)


def _in_place_mode(record: DiskRecord, opts: RestoreOptions) -> str:
    """``in-place``, or ``new`` when the image is gone or must be recreated (``--force``)."""
    path = Path(record.source)
    if not path.exists():
        if not path.parent.is_dir():
            raise ImageError(f"disk {record.target}: folder {path.parent} does not exist")
        return "new"
    if not opts.force:
        held = image_lock_error(path, record.format, for_write=True)
        if held is not None:
            raise ImageError(in_use_message(path, held))
    info = image_info(path)
    if info.format != record.format:
        if not opts.force:
            raise ImageError(
                f"disk {record.target}: {path} is now a {info.format} image, the point's is "
                f"{record.format}: use --force to recreate it"
            )
        return "new"
    if info.virtual_size != record.virtual_size:
        if not opts.force:
            raise ImageError(
                f"disk {record.target}: {path} is {info.virtual_size} bytes but was "
                f"{record.virtual_size} bytes at the recovery point: use --force to recreate it"
            )
        return "new"
    try:
        check_image(path, record.format)  # a damaged image's lost data would compare as zeros
    except ImageError as exc:
        if not opts.force:
            raise ImageError(
                f"disk {record.target}: {exc}, or use --force to recreate it"
            ) from None
        return "new"
    return "in-place"


def write_disks_in_place(
    vault: ImageRestoreVault, point: RecoveryPoint, opts: RestoreOptions
) -> tuple[VMRecord, RestoreSummary]:
    """Write every disk of a ``vm`` point back to its recorded path and format (vault locked
    by the caller); nothing is written unless every disk and chunk checks out."""
    vm = _load_vm(vault, point)
    plans = [_plan(vault, d) for d in vm.disks]
    modes = [_in_place_mode(d, opts) for d in vm.disks]
    check_chunks(vault, [p.cmap for p in plans])
    summary = RestoreSummary(point.point_id, "vm-in-place", vm.name, xml_path=vm.xml_path or None)
    force_new = RestoreOptions(True, opts.verify, opts.workers, opts.progress)
    for record, plan, mode in zip(vm.disks, plans, modes, strict=True):
        path = Path(record.source)
        result = DiskResult(record.target, str(path), record.format, record.virtual_size, mode)
        if mode == "in-place":
            write_in_place(vault, plan, path, record.format, result, opts)
        else:
            write_new(vault, plan, path, record.format, result, force_new)
        summary.disks.append(result)
    return vm, summary


def restore_vm_in_place(
    vault: ImageRestoreVault, point: RecoveryPoint, opts: RestoreOptions
) -> RestoreSummary:
    """Write every disk back to its original path and format, then the domain XML."""
    started = time.monotonic()
    with vault.read_lock():
        vm, summary = write_disks_in_place(vault, point, opts)
        xml_path = Path(vm.xml_path)
        if vm.xml_path and xml_path.parent.is_dir():
            write_file_atomic(xml_path, vm.xml)
        else:
            summary.xml_path = None
    summary.duration = round(time.monotonic() - started, 3)
    return summary


def _out_format(record: DiskRecord, fmt: str | None) -> str:
    if fmt is not None:
        return check_write_format(fmt)
    return record.format if record.format in WRITE_FORMATS else "qcow2"


def write_disks_as_new(
    vault: ImageRestoreVault,
    point: RecoveryPoint,
    name: str,
    folder: Path | None,
    fmt: str | None,
    opts: RestoreOptions,
) -> tuple[VMRecord, RestoreSummary, dict[str, tuple[Path, str]]]:
    """The point's disks as ``FOLDER/NAME-<target>.<ext>`` (vault locked by the caller);
    FOLDER defaults to the folder the original XML was read from."""
    if not name or "/" in name or name.startswith("."):
        raise ImageError(f"invalid VM name {name!r}")
    vm = _load_vm(vault, point)
    given = folder
    folder = folder if folder is not None else Path(vm.xml_path or vm.disks[0].source).parent
    if given is not None:  # as restic restore --target: the folder asked for is made
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ImageError(f"cannot create disk folder {folder}: {exc.strerror}") from None
    if not folder.is_dir():
        raise ImageError(f"disk folder {folder} does not exist (give --disk-dir)")
    folder = folder.absolute()
    outputs: dict[str, tuple[Path, str]] = {}
    for d in vm.disks:
        out_fmt = _out_format(d, fmt)
        outputs[d.target] = (folder / f"{name}-{d.target}{extension_for(out_fmt)}", out_fmt)
    xml_out = folder / f"{name}.xml"
    for path in [*(p for p, _ in outputs.values()), xml_out]:
        check_new_target(path, opts.force)
    plans = [_plan(vault, d) for d in vm.disks]
    check_chunks(vault, [p.cmap for p in plans])
    summary = RestoreSummary(point.point_id, "vm-as-new", name, xml_path=str(xml_out))
    for record, plan in zip(vm.disks, plans, strict=True):
        path, out_fmt = outputs[record.target]
        result = DiskResult(record.target, str(path), out_fmt, record.virtual_size)
        summary.disks.append(write_new(vault, plan, path, out_fmt, result, opts))
    return vm, summary, outputs


def restore_vm_as_new(
    vault: ImageRestoreVault,
    point: RecoveryPoint,
    name: str,
    opts: RestoreOptions,
    *,
    disk_dir: Path | None = None,
    fmt: str | None = None,
) -> RestoreSummary:
    """The VM as ``name``: new UUID and MACs; disks ``DIR/NAME-<target>.<ext>``, XML
    ``DIR/NAME.xml`` (DIR defaults to the folder the original XML was read from)."""
    started = time.monotonic()
    with vault.read_lock():
        vm, summary, outputs = write_disks_as_new(vault, point, name, disk_dir, fmt, opts)
        assert summary.xml_path is not None
        write_file_atomic(Path(summary.xml_path), rewrite_as_new(vm.xml, name, outputs))
    summary.duration = round(time.monotonic() - started, 3)
    return summary


def _read_attach_xml(path: Path) -> bytes:
    try:
        xml = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror}") from None
    parse_domain(xml, str(path), base=path.parent)
    return xml


def restore_disk(
    vault: ImageRestoreVault,
    point: RecoveryPoint,
    which: str | None,
    to: Path,
    opts: RestoreOptions,
    *,
    fmt: str | None = None,
    attach: Path | None = None,
) -> RestoreSummary:
    """One disk of a ``vm`` or ``disk`` point to ``to`` (a new image, or a block device)."""
    started = time.monotonic()
    to = to.absolute()
    attach_xml = _read_attach_xml(attach) if attach is not None else None
    with vault.read_lock():
        record = load_point(vault, point).disk(which)
        block = is_block_device(to)
        out_fmt = "raw" if block else _out_format(record, fmt or format_from_extension(to))
        if block and not opts.force:
            raise ImageError(f"{to} is a block device: use --force to overwrite it")
        if not block:
            check_new_target(to, opts.force)
        plan = _plan(vault, record)
        check_chunks(vault, [plan.cmap])
        summary = RestoreSummary(point.point_id, "disk", record.target or record.source)
        mode = "in-place" if block else "new"
        result = DiskResult(record.target, str(to), out_fmt, record.virtual_size, mode)
        if block:
            write_in_place(vault, plan, to, "raw", result, opts, exact=False)
        else:
            write_new(vault, plan, to, out_fmt, result, opts)
        summary.disks.append(result)
    if attach is not None and attach_xml is not None:
        new_xml, target = attach_disk(attach_xml, to, out_fmt, record.bus or "virtio", str(attach))
        write_file_atomic(attach, new_xml)
        summary.attached_to, summary.attached_target = str(attach), target
    summary.duration = round(time.monotonic() - started, 3)
    return summary
