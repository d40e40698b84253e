"""``strongroom vm list``: the domains of a libvirt connection, with their backup state."""

from __future__ import annotations

from dataclasses import asdict, field
from typing import Any

from strongroom.errors import ImageError
from strongroom.image.libvirt.chain import recorded_checkpoint
from strongroom.image.libvirt.checkpoints import PREFIX, checkpoints
from strongroom.image.libvirt.conn import (
    Connection,
    LibvirtError,
    is_active,
    libvirt_errors,
    state_name,
)
from strongroom.image.libvirt.domxml import domain_info
from strongroom.image.vaultview import ImageVault
from strongroom.records import dataclass
from strongroom.vault import RecoveryPoint

__all__ = ["VMRow", "list_vms"]


@dataclass
class VMRow:
    name: str
    uuid: str
    state: str
    disks: list[dict[str, Any]] = field(default_factory=list)
    last_point: dict[str, Any] | None = None
    checkpoint: str | None = None  # the newest strongroom checkpoint
    checkpoint_state: str = "none"
    other_checkpoints: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _disks(dom: Any, running: bool) -> list[dict[str, Any]]:
    flags = 0 if running else 2  # VIR_DOMAIN_XML_INACTIVE
    info = domain_info(str(dom.XMLDesc(flags)))
    rows = []
    for d in info.disks:
        size = None
        if running:
            try:
                with libvirt_errors(f"block info of {d.target}"):
                    size = int(dom.blockInfo(d.target, 0)[0])
            except LibvirtError:  # e.g. a disk without media: listed without a size
                size = None
        rows.append({"target": d.target, "format": d.format, "source": str(d.source), "size": size})
    return rows


def _checkpoint_state(newest: str | None, points: list[RecoveryPoint], has_vault: bool) -> str:
    if newest is None:
        return "none"
    if not has_vault:
        return "unknown (no vault)"
    if any(recorded_checkpoint(p) == newest for p in points):
        return "in vault: next backup incremental"
    return "not in this vault: next backup full"


def _row(dom: Any, vault_points: list[RecoveryPoint] | None) -> VMRow:
    running = is_active(dom)
    name = str(dom.name())
    row = VMRow(name, str(dom.UUIDString()), state_name(dom), _disks(dom, running))
    found = checkpoints(dom)
    ours = [c for c in found if c.name.startswith(PREFIX)]
    row.other_checkpoints = len(found) - len(ours)
    row.checkpoint = ours[0].name if ours else None
    points = [
        p for p in vault_points or [] if p.manifest.kind == "vm" and p.manifest.source == name
    ]
    if points:
        last = points[-1]
        row.last_point = {
            "id": last.point_id,
            "time": last.manifest.time,
            "consistency": last.manifest.consistency,
        }
    row.checkpoint_state = _checkpoint_state(row.checkpoint, points, vault_points is not None)
    return row


def list_vms(
    conn: Connection, vault: ImageVault | None, names: list[str] | None = None
) -> list[VMRow]:
    """Every domain (or the named ones), with the vault's last point of each, if a vault."""
    points = vault.points() if vault is not None else None
    doms = [conn.domain(n) for n in names] if names else conn.domains()
    rows = []
    for dom in doms:
        try:
            with libvirt_errors(f"cannot describe {dom.name()}"):
                rows.append(_row(dom, points))
        except ImageError:
            if names:
                raise  # a domain that vanished meanwhile is skipped in a full listing
    return rows
