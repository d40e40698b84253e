"""strongroom's element in a domain's ``<metadata>``: "the next backup starts a new chain".

An in-place restore rewrites the disks behind libvirt's back, so it leaves this mark; the
next backup reads it (a full read, the reason recorded) and clears it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from strongroom.image.libvirt.conn import LibvirtError, libvirt_errors, libvirt_module
from strongroom.image.libvirt.domxml import METADATA_KEY, METADATA_NS, parse_reset, reset_xml

__all__ = ["clear_reset", "read_reset", "set_reset"]


def _flags(dom: Any) -> int:
    lv = libvirt_module()
    flags = int(lv.VIR_DOMAIN_AFFECT_CONFIG)
    return flags | int(lv.VIR_DOMAIN_AFFECT_LIVE) if dom.isActive() else flags


def read_reset(dom: Any) -> tuple[str, str] | None:
    lv = libvirt_module()
    try:
        xml = dom.metadata(lv.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS, lv.VIR_DOMAIN_AFFECT_CONFIG)
    except lv.libvirtError:
        return None  # no strongroom element
    return parse_reset(str(xml))


def set_reset(dom: Any, reason: str, point: str) -> None:
    lv = libvirt_module()
    with libvirt_errors(f"cannot mark {dom.name()} for a new backup chain"):
        dom.setMetadata(
            lv.VIR_DOMAIN_METADATA_ELEMENT,
            reset_xml(reason, point),
            METADATA_KEY,
            METADATA_NS,
            _flags(dom),
        )


def clear_reset(dom: Any) -> None:
    lv = libvirt_module()
    with contextlib.suppress(LibvirtError), libvirt_errors("cannot clear strongroom's metadata"):
        dom.setMetadata(lv.VIR_DOMAIN_METADATA_ELEMENT, None, None, METADATA_NS, _flags(dom))
