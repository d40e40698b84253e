"""strongroom's libvirt checkpoints: naming, listing, deleting, and bitmaps in qcow2 images.

A checkpoint is named ``strongroom-<UTC time>-<6 hex>`` when its backup starts (a point's id
is only known once it is saved) and the point records that name.  Checkpoints whose names
do not start with ``strongroom-`` belong to other tools and are never touched, except by an
in-place restore, after which no checkpoint describes the disks any more.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from strongroom.errors import ImageError
from strongroom.image.formats import qemu_img_path
from strongroom.image.libvirt.conn import libvirt_errors, libvirt_module
from strongroom.image.libvirt.domxml import CheckpointInfo, parse_checkpoint

__all__ = [
    "PREFIX",
    "checkpoints",
    "delete_checkpoint",
    "image_bitmaps",
    "new_checkpoint_name",
    "remove_image_bitmaps",
    "strongroom_checkpoints",
]

PREFIX: Final = "strongroom-"


def new_checkpoint_name() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{PREFIX}{stamp}-{os.urandom(3).hex()}"


def checkpoints(dom: Any) -> list[CheckpointInfo]:
    """Every checkpoint of the domain, newest first."""
    lv = libvirt_module()
    flags = lv.VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN
    with libvirt_errors(f"cannot list the checkpoints of {dom.name()}"):
        found = [parse_checkpoint(cp.getXMLDesc(flags)) for cp in dom.listAllCheckpoints(0)]
    return sorted(found, key=lambda c: (c.created, c.name), reverse=True)


def strongroom_checkpoints(dom: Any) -> list[CheckpointInfo]:
    return [c for c in checkpoints(dom) if c.name.startswith(PREFIX)]


def delete_checkpoint(dom: Any, name: str, *, metadata_only: bool = False) -> None:
    """Delete one checkpoint; its bitmap's changes merge into its parent's (libvirt does that
    for a running domain).  ``metadata_only`` forgets it without touching any image."""
    lv = libvirt_module()
    flags = lv.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY if metadata_only else 0
    with libvirt_errors(f"cannot delete checkpoint {name} of {dom.name()}"):
        dom.checkpointLookupByName(name, 0).delete(flags)


def image_bitmaps(path: Path) -> dict[str, list[str]]:
    """Persistent bitmaps of a qcow2 image: name -> flags (``auto``, ``in-use``)."""
    proc = subprocess.run(
        [qemu_img_path(), "info", "-U", "--output=json", "-f", "qcow2", str(path)],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    if proc.returncode != 0:
        raise ImageError(f"cannot read the bitmaps of {path}: {proc.stderr.strip()}")
    doc = json.loads(proc.stdout)
    found = doc.get("format-specific", {}).get("data", {}).get("bitmaps", [])
    return {b["name"]: list(b.get("flags", [])) for b in found}


def remove_image_bitmaps(path: Path, names: set[str]) -> list[str]:
    """Remove the named persistent bitmaps from a (not running) qcow2 image."""
    removed = []
    for name in sorted(names & set(image_bitmaps(path))):
        with contextlib.suppress(subprocess.SubprocessError):
            proc = subprocess.run(
                [qemu_img_path(), "bitmap", "--remove", "-f", "qcow2", str(path), name],
                capture_output=True,
                text=True,
                check=False,
                stdin=subprocess.DEVNULL,
                timeout=120,
            )
            if proc.returncode == 0:
                removed.append(name)
    return removed
