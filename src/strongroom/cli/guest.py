"""``ls`` and ``restore files`` on VM and disk points (files inside image points): called from
:mod:`strongroom.cli.files` when the point is an image point."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from strongroom.cli.options import CLIError
from strongroom.cli.output import print_json

if TYPE_CHECKING:
    from strongroom.vault import RecoveryPoint, Vault

IMAGE_KINDS = ("vm", "disk")


def image_point(v: Vault, spec: str) -> RecoveryPoint | None:
    """The point ``spec`` names if it is a VM or disk point (``latest`` stays a files one)."""
    if spec == "latest":
        return None
    p = v.resolve_point(spec)
    return p if p.manifest.kind in IMAGE_KINDS else None


def luks_passphrase(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes().rstrip(b"\n")
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror}") from None


def ls(
    v: Vault, p: RecoveryPoint, path: str, long: bool, as_json: bool, luks: bytes | None
) -> None:
    from strongroom.files import long_line, node_doc
    from strongroom.files.tree import split_path
    from strongroom.guestfiles.tree import GuestPoint, GuestTree

    guest = GuestPoint(v, p, luks)
    parts = split_path(path)
    if len(parts) == 1:  # a disk: its volumes
        name = os.fsdecode(parts[0])
        if name not in guest.disks():
            raise CLIError(f"{path}: no disk {name!r} in point {p.short_id}")
        docs = [_volume_doc(name, vol) for vol in guest.volumes(name)]
        if as_json:
            print_json(docs)
        for d in [] if as_json else docs:
            typer.echo(f"{d['path']}\t{d['fstype'] or '-'}\t{d['label'] or '-'}\t{d['uuid'] or '-'}"
                       f"\t{d['size']}" + (f"\t({d['error']})" if d["error"] else ""))  # fmt: skip
        return
    trees = GuestTree(guest)
    with v.read_lock():
        node = trees.lookup(trees.root(), path)
        if node is None:
            raise CLIError(f"{path}: not in recovery point {p.short_id}")
        where = b"/" + b"/".join(parts)
        found = [(os.path.join(where, k.name), k) for k in trees.children(node)]
    if as_json:
        print_json([node_doc(pth, n) for pth, n in found])
        return
    for pth, n in found:
        typer.echo(" ".join(long_line(pth, n)) if long else os.fsdecode(pth))


def _volume_doc(disk: str, vol: Any) -> dict[str, Any]:
    return {
        "path": f"/{disk}/{vol.name}",
        "fstype": vol.kind,
        "label": vol.label,
        "uuid": vol.uuid,
        "size": vol.size,
        "error": vol.error,
    }
