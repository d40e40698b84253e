"""The restore pages' HTML: an item's points, a point's folder like a file manager (with
downloads and a restore form), and the VM / disk restore form."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

from strongroom.server.web.pages import WRITERS, csrf_field, e, layout, table, when
from strongroom.server.web.users import Session

CONFLICTS = ("overwrite", "skip", "keep-both")
IMAGE_KINDS = ("vm", "disk")
FORMATS = ("", "raw", "qcow2", "vmdk", "vdi", "vhdx")


def base(item: str, point: str) -> str:
    return f"/ui/items/{quote(item, safe='')}/points/{quote(point, safe='')}"


def _size(n: object) -> str:
    if not isinstance(n, int):
        return "-"
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"


def _mode(doc: dict[str, Any]) -> str:
    kinds = {"file": "-", "dir": "d", "symlink": "l", "fifo": "p", "chardev": "c"}
    try:
        bits = int(str(doc.get("mode", "0")), 8)
    except ValueError:
        return "-"
    return kinds.get(str(doc.get("type")), "b") + stat.filemode(bits)[1:]


def _crumbs(item: str, point: str, path: str, agent: str) -> str:
    parts = [p for p in path.split("/") if p]
    links = [(f"{point[:12]}", "/")]
    for i in range(len(parts)):
        links.append((parts[i], "/" + "/".join(parts[: i + 1])))
    out = []
    for n, (label, to) in enumerate(links):
        if n == len(links) - 1:
            out.append(f'<li aria-current="location">{e(label)}</li>')
        else:
            out.append(f'<li><a href="{_browse_url(item, point, to, agent)}">{e(label)}</a></li>')
    return f'<nav aria-label="Folder" class="crumbs"><ol>{"".join(out)}</ol></nav>'


def _browse_url(item: str, point: str, path: str, agent: str) -> str:
    return e(f"{base(item, point)}/browse?" + urlencode({"path": path, "agent": agent}))


def _download(who: Session, item: str, point: str, doc: dict[str, Any], agent: str) -> str:
    if who.role not in WRITERS:
        return ""
    kind, path = str(doc.get("type")), str(doc["path"])
    if kind == "file":
        buttons = f'<button type="submit" name="format" value="file" aria-label="Download {e(doc["name"])}">Download</button>'  # noqa: E501
    elif kind == "dir":
        buttons = (
            f'<button type="submit" name="format" value="zip" aria-label="Download {e(doc["name"])} as zip">Zip</button> '  # noqa: E501
            f'<button type="submit" name="format" value="tar" aria-label="Download {e(doc["name"])} as tar">Tar</button>'  # noqa: E501
        )
    else:
        return ""
    return (
        f'<form method="post" action="{base(item, point)}/download" class="inline">'
        f'{csrf_field(who)}<input type="hidden" name="path" value="{e(path)}">'
        f'<input type="hidden" name="agent" value="{e(agent)}">{buttons}</form>'
    )


def browse_page(
    who: Session,
    item: str,
    point: str,
    listing: dict[str, Any],
    agents: Sequence[str],
    agent: str,
) -> str:
    path = str(listing.get("path", "/"))
    image = listing.get("kind") in IMAGE_KINDS

    def row(doc: dict[str, Any]) -> str:
        name = str(doc.get("name") or os.path.basename(str(doc["path"])))
        doc = {**doc, "name": name}
        shown = e(name)
        if doc.get("type") == "dir":
            shown = f'<a href="{_browse_url(item, point, str(doc["path"]), agent)}">{e(name)}/</a>'
        extra = " ".join(
            f"{k} {e(doc[k])}" for k in ("fstype", "label") if doc.get(k) not in (None, "")
        )
        size = doc.get("size")
        return (
            f'<tr data-name="{e(name)}"><td>{shown}</td><td>{e(doc.get("type"))}'
            f"{' (' + extra + ')' if extra else ''}</td><td>{_size(size)}</td>"
            f"<td>{e(_mode(doc))}</td><td>{when(int(doc.get('mtime_ns') or 0) / 1e9 or None)}</td>"
            + (f"<td>{_download(who, item, point, doc, agent)}</td>" if writer else "")
            + "</tr>"
        )

    writer = who.role in WRITERS
    heads = ("Name", "Type", "Size", "Mode", "Modified") + (("Download",) if writer else ())
    entries = list(listing.get("entries", []))
    body = (
        _crumbs(item, point, path, agent)
        + _agent_picker(item, point, path, agents, agent)
        + table(f"{path} in point {point[:12]}", heads, map(row, entries), "Empty folder.")
    )
    if who.role in WRITERS:
        body += restore_files_form(who, item, point, path, agents, agent)
        if image:
            link = e(f"{base(item, point)}/restore-image?agent={quote(agent)}")
            body += f'<p><a href="{link}">Restore the VM or a disk of this point…</a></p>'
    return layout(f"Browse {item}", body, who, "/ui/items")


def _agent_picker(item: str, point: str, path: str, agents: Sequence[str], agent: str) -> str:
    return (
        f'<form method="get" action="{base(item, point)}/browse" class="filters">'
        f'<input type="hidden" name="path" value="{e(path)}">'
        + _select("agent", "Agent that reads the point", agents, agent, "b-agent")
        + '<button type="submit">Use this agent</button></form>'
    )


def _select(name: str, label: str, options: Sequence[str], chosen: str, ident: str) -> str:
    opts = "".join(
        f'<option value="{e(o)}"{" selected" if o == chosen else ""}>{e(o or "(default)")}</option>'
        for o in options
    )
    return f'<label for="{ident}">{label}</label><select id="{ident}" name="{name}">{opts}</select>'


def restore_files_form(
    who: Session, item: str, point: str, path: str, agents: Sequence[str], agent: str
) -> str:
    return (
        f'<form method="post" action="{base(item, point)}/restore" class="card" id="restore">'
        f'{csrf_field(who)}<input type="hidden" name="what" value="files">'
        "<h2>Restore files to an agent</h2>"
        '<label for="r-paths">Paths in the point (one per line; globs as the CLI)</label>'
        f'<textarea id="r-paths" name="paths" rows="3">{e(path)}</textarea>'
        + _select("agent", "Agent to restore on", agents, agent, "r-agent")
        + '<label for="r-target">Target folder on that agent</label>'
        '<input id="r-target" name="target" required>'
        + _select("on_conflict", "When a file exists", CONFLICTS, "overwrite", "r-conflict")
        + '<label><input type="checkbox" name="verify" value="1"> Verify (re-read each file)'
        '</label><label><input type="checkbox" name="dry_run" value="1"> Dry run</label>'
        '<button type="submit">Restore</button></form>'
    )


def _field(ident: str, name: str, label: str, value: str = "") -> str:
    return (
        f'<label for="{ident}">{label}</label><input id="{ident}" name="{name}" value="{e(value)}">'
    )


def _check(name: str, label: str) -> str:
    return f'<label><input type="checkbox" name="{name}" value="1"> {label}</label>'


def image_page(who: Session, item: str, point: str, agents: Sequence[str], agent: str) -> str:
    url = f"{base(item, point)}/restore"

    def form(what: str, title: str, inner: str) -> str:
        return (
            f'<form method="post" action="{url}" class="card" id="restore-{what}">'
            f'{csrf_field(who)}<input type="hidden" name="what" value="{what}"><h2>{title}</h2>'
            + _select("agent", "Agent (the hypervisor host)", agents, agent, f"{what}-agent")
            + inner
            + f'<button type="submit">{title}</button></form>'
        )

    disk = form(
        "disk",
        "Restore a disk",
        _field("d-disk", "disk", "Disk (target such as vda, or path; empty: the only one)")
        + _field("d-to", "to", "To (image file or block device)")
        + _select("format", "Format", FORMATS, "", "d-format")
        + _field("d-attach", "attach", "Add to this VM's XML file (optional)")
        + _field("d-attach-to", "attach_to", "libvirt: attach to this domain (optional)")
        + _field("d-connect", "connect", "libvirt URI (optional)")
        + _check("force", "Force (overwrite)")
        + _check("verify", "Verify"),
    )
    vm = form(
        "vm",
        "Restore the VM",
        _where("only changed chunks written; the domain shut off, or force")
        + _field("v-name", "name", "New VM's name (as new)")
        + _field("v-dir", "disk_dir", "Folder for its disks and XML (optional)")
        + _select("format", "Format", FORMATS, "", "v-format")
        + _field("v-connect", "connect", "libvirt URI (optional)")
        + _check("start", "Start it (libvirt)")
        + _check("force", "Force (overwrite; in place: power the domain off when it runs)")
        + _check("verify", "Verify"),
    )
    instant = form(
        "instant",
        "Restore instantly",
        "<p>The VM starts at once, its disks read from the vault while they are copied; "
        "finish it below (finalize: everything local; abort: nothing left).</p>"
        + _where("the point's own domain, its disks kept until finalize")
        + _field("i-name", "name", "New VM's name (as new)")
        + _field("i-dir", "disk_dir", "Folder for the overlays (optional)")
        + _field("i-connect", "connect", "libvirt URI (optional)")
        + _check("force", "Force (power the domain off when it runs; in place)"),
    )
    link = e(f"{base(item, point)}/instant?agent={quote(agent)}")
    listed = f'<p><a href="{link}">Instant recoveries running on {e(agent)}…</a></p>'
    return layout(
        f"Restore from {point[:12]}",
        disk + vm + instant + _finish(who, url, agents, agent) + listed,
        who,
        "/ui/items",
    )


def _where(in_place: str) -> str:
    """The as-new / in-place choice (``--as-new NAME`` or ``--in-place``)."""
    return (
        '<fieldset><legend>Where</legend><label><input type="radio" name="mode" value="new" '
        'checked> As a new VM</label><label><input type="radio" name="mode" value="in-place">'
        f" In place ({in_place})</label></fieldset>"
    )


def _finish(who: Session, url: str, agents: Sequence[str], agent: str) -> str:
    """``instant finalize NAME`` / ``instant abort NAME`` on the agent running it."""
    return (
        f'<form method="post" action="{url}" class="card" id="instant-finish">{csrf_field(who)}'
        "<h2>Finish an instant recovery</h2>"
        '<label for="f-name">Its VM\'s name</label><input id="f-name" name="name" required>'
        + _select("agent", "Agent running it", agents, agent, "f-agent")
        + '<button type="submit" name="what" value="instant-finalize">Finalize</button> '
        '<button type="submit" name="what" value="instant-abort">Abort</button></form>'
    )


def instant_page(
    who: Session,
    item: str,
    point: str,
    rows: Sequence[dict[str, Any]],
    agents: Sequence[str],
    agent: str,
) -> str:
    """``instant list`` of the agent's host (recoveries from this item's vault), each with
    its Finalize and Abort buttons."""
    url = f"{base(item, point)}/restore"

    def row(r: dict[str, Any]) -> str:
        name = str(r.get("name", ""))
        pid = f" (pid {e(r['pid'])})" if r.get("pid") else ""
        buttons = (
            f'<form method="post" action="{url}" class="inline">{csrf_field(who)}'
            f'<input type="hidden" name="name" value="{e(name)}">'
            f'<input type="hidden" name="agent" value="{e(agent)}">'
            f'<button type="submit" name="what" value="instant-finalize" '
            f'aria-label="Finalize {e(name)}">Finalize</button> '
            f'<button type="submit" name="what" value="instant-abort" '
            f'aria-label="Abort {e(name)}">Abort</button></form>'
        )
        return (
            f'<tr data-name="{e(name)}"><td>{e(name)}</td><td>{e(str(r.get("point", ""))[:12])}'
            f"</td><td>{e(r.get('domain'))}</td><td>{e(r.get('export'))}{pid}</td>"
            f"<td>{e(r.get('restarts'))}</td><td>{_size(r.get('bytes_local'))} of "
            f"{_size(r.get('virtual_size'))}</td><td>{buttons}</td></tr>"
        )

    heads = ("VM", "Point", "Domain", "Export", "Restarts", "Local", "Finish")
    body = (
        f'<form method="get" action="{base(item, point)}/instant" class="filters">'
        + _select("agent", "Agent (the hypervisor host)", agents, agent, "l-agent")
        + '<button type="submit">Use this agent</button></form>'
        + table(f"Instant recoveries on {agent}", heads, map(row, rows), "None running.")
    )
    return layout(f"Instant recoveries on {agent}", body, who, "/ui/items")
