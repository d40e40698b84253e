"""Image restores the dashboard asks an agent for: one disk, a VM as new or in place, or an
instant recovery (as new or in place; then finalized or aborted) -- through the same engine
calls as ``restore disk``, ``restore vm``, ``restore vm --instant`` and ``instant
finalize|abort`` (``cli/image.py``, ``cli/instant.py``), with the same rule for
libvirt: a point taken through libvirt goes back into libvirt (``connect`` picks the host),
a point from XML files goes to files unless ``connect`` is given."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strongroom.agent.work import Outcome
from strongroom.errors import StrongroomError
from strongroom.storage.http import TOKEN_ENV

if TYPE_CHECKING:
    from strongroom.agent.restorework import Relay
    from strongroom.image.libvirt import LibvirtProvider
    from strongroom.image.vmrestore import RestoreSummary
    from strongroom.vault import RecoveryPoint, Vault


class RestoreRequestError(StrongroomError):
    """The dashboard's restore request is incomplete or contradictory."""


def _opt_path(work: dict[str, Any], key: str) -> Path | None:
    value = work.get(key)
    return Path(str(value)) if value else None


def _opt_str(work: dict[str, Any], key: str) -> str | None:
    value = work.get(key)
    return str(value) if value else None


def provider_for(p: RecoveryPoint, connect: str | None) -> LibvirtProvider | None:
    """As ``cli.vm.provider_for``: libvirt for a libvirt point or an explicit URI."""
    libvirt_meta: dict[str, Any] = p.manifest.meta.get("libvirt") or {}
    uri = connect or libvirt_meta.get("uri")
    if connect is None and not uri:
        return None
    from strongroom.image.libvirt import LibvirtProvider

    return LibvirtProvider(str(uri) if uri else None)


def run(
    v: Vault,
    p: RecoveryPoint,
    work: dict[str, Any],
    progress: Callable[[str, int, int], None],
    relay: Relay | None,
) -> Outcome:
    from strongroom.image import RestoreOptions

    what = str(work["what"])
    if what.startswith("instant-"):
        return finish_instant(v, work)
    if p.manifest.kind not in (("vm", "disk") if what == "disk" else ("vm",)):
        raise RestoreRequestError(f"a {what} restore needs a VM point, not a {p.manifest.kind}")
    if what == "instant":
        return _instant(v, p, work, relay)
    opts = RestoreOptions(
        force=bool(work.get("force")), verify=bool(work.get("verify")), progress=progress
    )
    summary = _disk(v, p, work, opts) if what == "disk" else _vm(v, p, work, opts)
    lines = [
        f"{d.target or '-'} -> {d.path} ({d.format}, {d.mode}): {d.bytes_written} bytes written"
        for d in summary.disks
    ]
    if summary.xml_path:
        lines.append(f"domain XML: {summary.xml_path}")
    lines.append(f"restored {len(summary.disks)} disk(s) from {p.short_id}")
    return Outcome("succeeded", bytes_read=summary.bytes_written, log=lines)


def _disk(v: Vault, p: RecoveryPoint, work: dict[str, Any], opts: Any) -> RestoreSummary:
    from strongroom.image import restore_disk

    to, attach_to = _opt_path(work, "to"), _opt_str(work, "attach_to")
    fmt, disk = _opt_str(work, "format"), _opt_str(work, "disk")
    if to is None and attach_to is None:
        raise RestoreRequestError("a disk restore needs a target path (or a domain to attach to)")
    if attach_to is not None:
        provider = provider_for(p, _opt_str(work, "connect") or "")
        assert provider is not None
        with provider:
            found: RestoreSummary = provider.attach(v, p, disk, attach_to, opts, to=to, fmt=fmt)
            return found
    assert to is not None
    return restore_disk(v, p, disk, to, opts, fmt=fmt, attach=_opt_path(work, "attach"))


def _vm(v: Vault, p: RecoveryPoint, work: dict[str, Any], opts: Any) -> RestoreSummary:
    from strongroom.image import restore_vm_as_new, restore_vm_in_place

    mode, name = str(work.get("mode")), _opt_str(work, "name")
    if mode not in ("new", "in-place") or (mode == "new") != (name is not None):
        raise RestoreRequestError("a VM restore is in place, or as new with a name")
    disk_dir, fmt, start = _opt_path(work, "disk_dir"), _opt_str(work, "format"), work.get("start")
    provider = provider_for(p, _opt_str(work, "connect"))
    if provider is None and start:
        raise RestoreRequestError("start restores into libvirt: give a libvirt URI")
    if provider is None:
        if name is not None:
            return restore_vm_as_new(v, p, name, opts, disk_dir=disk_dir, fmt=fmt)
        return restore_vm_in_place(v, p, opts)
    try:
        if name is not None:
            return provider.define_as_new(
                v, p, name, opts, disk_dir=disk_dir, fmt=fmt, start=bool(start)
            )
        return provider.restore_in_place(v, p, opts, start=bool(start))
    finally:
        provider.close()


def _instant(v: Vault, p: RecoveryPoint, work: dict[str, Any], relay: Relay | None) -> Outcome:
    """``restore vm --instant --as-new NAME | --in-place [--force]``: the background export
    reads the served vault with this agent's token and passphrase."""
    from strongroom.image.instant import recover
    from strongroom.image.instant.inplace import start_in_place

    name, in_place = _opt_str(work, "name"), work.get("mode") == "in-place"
    if (name is None) != in_place or relay is None:
        raise RestoreRequestError("an instant recovery is in place, or as new with a name")
    libvirt_meta: dict[str, Any] = p.manifest.meta.get("libvirt") or {}
    # the background export (a child process) reads the served vault with the agent's token
    os.environ[TOKEN_ENV] = relay.token
    common: dict[str, Any] = {
        "location": f"{relay.server.rstrip('/')}/{work['vault']}",
        "passphrase": relay.passphrase,
        "disk_dir": _opt_path(work, "disk_dir"),
        "uri": _opt_str(work, "connect") or libvirt_meta.get("uri"),
    }
    if in_place:
        record = start_in_place(v, p, force=bool(work.get("force")), **common)
    else:
        assert name is not None
        record = recover.start(v, p, name=name, **common)
    lines = [f"{d.target} -> {d.overlay} (qcow2 over the vault)" for d in record.disks]
    lines.append(
        f"{record.name} started; finish it on the restore page (Finalize or Abort), or with "
        f"`strongroom instant finalize {record.name}` on this host"
    )
    return Outcome("succeeded", log=lines)


def finish_instant(v: Vault, work: dict[str, Any]) -> Outcome:
    """``instant finalize|abort NAME``, for an instant recovery of one of the item's points."""
    from strongroom.image.instant import recover
    from strongroom.image.instant.state import InstantRecord, check_name

    name = check_name(str(work.get("name") or ""))  # a name, never a path out of the state
    record = InstantRecord.load(name)
    if v.resolve_point(record.point).manifest.source != work.get("source"):
        raise RestoreRequestError(f"instant recovery {name} is not of item {work.get('item')}")
    if work["what"] == "instant-abort":
        recover.abort(name)
        return Outcome("succeeded", log=[f"{name}: removed (domain, overlays, export)"])
    done = recover.finalize(name)
    lines = [f"{name} runs from local disks: " + ", ".join(d.overlay for d in done.disks)]
    if done.in_place and done.replaced:
        lines.append("removed the disks it replaced: " + ", ".join(done.replaced))
    return Outcome("succeeded", log=lines)


def instant_rows(location: str) -> list[dict[str, Any]]:
    """``instant list`` of the recoveries on this host that read the vault at ``location``."""
    from strongroom.image.instant import recover
    from strongroom.image.instant.state import records

    names = [r.name for r in records() if r.vault == location]
    return [row.to_dict() for name in names for row in recover.status(name)]
