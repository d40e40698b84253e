"""Instant recovery: start a VM on overlays backed by the vault, list, finalize, abort, resume.

``restore vm POINT --instant --as-new NAME`` writes nothing but small qcow2 overlays: the
background export (:mod:`.supervise`) serves the point, the domain starts at once, and reads
of data not yet local go to the vault.  ``finalize`` moves everything into the overlays and
stops the export; ``abort`` removes the domain, the overlays, the export and the state.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

from strongroom.errors import ImageError
from strongroom.image.chunkcache import open_point_disks
from strongroom.image.instant.serve import export_uri
from strongroom.image.instant.state import InstantDisk, InstantRecord, check_name, records
from strongroom.image.instant.supervise import choose_supervisor, start_export, stop_export
from strongroom.image.instant.supervisor import read_info
from strongroom.image.libvirt.conn import Connection
from strongroom.image.libvirt.instant import (
    create_overlay,
    define_instant,
    domain_state,
    finalize_domain,
    instant_xml,
    qemu_owner,
    remove_domain,
)
from strongroom.image.records import load_point
from strongroom.image.restore import check_new_target
from strongroom.records import dataclass
from strongroom.vault import RecoveryPoint, Vault

__all__ = ["InstantStatus", "abort", "finalize", "resume", "start", "status"]


@dataclass
class InstantStatus:
    name: str
    point: str
    domain: str
    export: str  # "running" / "down" / "stopped" (after finalize)
    pid: int | None
    disks: list[dict[str, Any]]
    supervisor: str = "process"
    supervisor_pid: int | None = None
    restarts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "point": self.point,
            "domain": self.domain,
            "export": self.export,
            "pid": self.pid,
            "disks": self.disks,
            "supervisor": self.supervisor,
            "supervisor_pid": self.supervisor_pid,
            "restarts": self.restarts,
            "bytes_local": sum(d["bytes_local"] for d in self.disks),
            "virtual_size": sum(d["virtual_size"] for d in self.disks),
        }


def _overlays(record: InstantRecord) -> dict[str, Path]:
    return {d.target: Path(d.overlay) for d in record.disks}


def start(
    vault: Vault,
    point: RecoveryPoint,
    *,
    location: str,
    passphrase: str,
    name: str,
    disk_dir: Path | None,
    uri: str | None,
) -> InstantRecord:
    """Serve ``point`` in the background and start it as the new domain ``name``."""
    check_name(name)
    if point.manifest.kind != "vm":
        raise ImageError(f"point {point.short_id} is a {point.manifest.kind} point, not a VM")
    with vault.read_lock():
        vm = load_point(vault, point)
        open_point_disks(vault, point, None)  # every chunk there before anything is made
    folder = (disk_dir or Path(vm.xml_path or vm.disks[0].source).parent).absolute()
    if not folder.is_dir():
        raise ImageError(f"disk folder {folder} does not exist (give --disk-dir)")
    overlays = {d.target: folder / f"{name}-{d.target}.qcow2" for d in vm.disks}
    for path in overlays.values():
        check_new_target(path, force=False)
    conn = Connection(uri)
    try:
        if conn.find(name) is not None:
            raise ImageError(f"a domain named {name!r} already exists at {conn.uri}")
        record = InstantRecord(name, point.point_id, location, conn.uri)
        record.supervisor = choose_supervisor()
        record.disks = [
            InstantDisk(d.target, str(overlays[d.target]), d.virtual_size) for d in vm.disks
        ]
        record.create_folder(qemu_owner(conn))
        try:
            record.save()
            start_export(record, passphrase)
            for d in record.disks:
                create_overlay(
                    Path(d.overlay), export_uri(d.target, record.socket, None), d.virtual_size
                )
            define_instant(conn, instant_xml(vm.xml, vm.name, name, overlays, record.socket))
        except BaseException:
            _remove_all(conn, record)
            raise
    finally:
        conn.close()
    return record


def _remove_all(conn: Connection, record: InstantRecord) -> None:
    remove_domain(conn, record.name)
    stop_export(record)
    for path in _overlays(record).values():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    shutil.rmtree(record.folder, ignore_errors=True)


def _local_bytes(path: Path) -> int:
    try:
        return path.stat().st_blocks * 512
    except OSError:
        return 0


def status(name: str | None = None) -> list[InstantStatus]:
    found = [InstantRecord.load(name)] if name is not None else records()
    out = []
    for record in found:
        try:
            with Connection(record.uri) as conn:
                dom = domain_state(conn, record.name)
        except ImageError as exc:
            dom = f"unknown ({exc})"
        pid = record.export_pid()
        disks = [
            {
                "target": d.target,
                "overlay": d.overlay,
                "virtual_size": d.virtual_size,
                "bytes_local": _local_bytes(Path(d.overlay)),
            }
            for d in record.disks
        ]
        export = "running" if record.export_running() else "down"
        row = InstantStatus(record.name, record.point, dom, export, pid, disks, record.supervisor)
        row.supervisor_pid = record.supervisor_pid()
        row.restarts = int(read_info(record).get("restarts", 0))
        out.append(row)
    return out


def finalize(name: str) -> InstantRecord:
    """Pull all data into the overlays (resumable), then stop the export, drop the state.

    In place, the old disks are deleted once the domain no longer names them
    (``record.replaced`` then lists them)."""
    record = InstantRecord.load(name)
    if not record.export_running():
        raise ImageError(
            f"the export of {name} is down: run `strongroom instant resume {name}` first"
        )
    with Connection(record.uri) as conn:
        finalize_domain(conn, record.name, _overlays(record))
        if record.in_place:
            from strongroom.image.instant.inplace import after_finalize

            record.replaced = after_finalize(conn, record)  # what was deleted
    stop_export(record)
    shutil.rmtree(record.folder, ignore_errors=True)
    return record


def abort(name: str) -> InstantRecord:
    """Remove the domain, its overlays, the export and the state: nothing is left."""
    record = InstantRecord.load(name)
    with Connection(record.uri) as conn:
        if record.in_place:
            from strongroom.image.instant.inplace import abort_in_place

            abort_in_place(conn, record)
        else:
            _remove_all(conn, record)
    return record


def resume(name: str, passphrase: str) -> int:
    """Restart a dead export (same socket): the domain's reads work again; its pid."""
    record = InstantRecord.load(name)
    return start_export(record, passphrase)  # refuses a running one; replaces stale files
