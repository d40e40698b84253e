"""``ls``, ``find``, ``diff`` and ``restore files`` on VM and disk points (files inside image
points): called from :mod:`strongroom.cli.files` when the point is an image point."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from strongroom.cli.options import CLIError
from strongroom.cli.output import console, escape, print_json, warn

if TYPE_CHECKING:
    from strongroom.files import RestoreOptions
    from strongroom.vault import RecoveryPoint, Vault

IMAGE_KINDS = ("vm", "disk")
EXIT_PARTIAL = 3
_DIFF_MARKS = {"added": "+", "removed": "-", "modified": "M", "metadata": "U", "type": "T"}


def image_point(v: Vault, spec: str, source: str | None = None) -> RecoveryPoint | None:
    """The point ``spec`` names if it is a VM or disk point.  ``latest`` is the newest VM or
    disk point of ``--source`` (a VM's name, a disk's path) when there is one, else it stays
    the files engine's (the newest files point)."""
    if spec == "latest":
        if source is None:
            return None
        found = [
            p for p in v.points() if p.manifest.source == source and p.manifest.kind in IMAGE_KINDS
        ]
        return found[-1] if found else None
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


def _failures(failures: list[tuple[str, str]], notes: list[tuple[str, str]], as_json: bool) -> None:
    """What could not be read goes to stderr (also with --json: exit 3 says there is some);
    notes (volumes without a filesystem) only in the human output."""
    for path, reason in failures:
        warn(f"{path}: {reason}")
    for path, reason in [] if as_json else notes:
        console().print(f"note: {escape(path)}: {reason}", soft_wrap=True)


def restore(v: Vault, p: RecoveryPoint, opts: RestoreOptions, luks: bytes | None) -> Any:
    """``restore files`` from an image point (the files engine's options and summary)."""
    from strongroom.guestfiles.restore import restore_guest_files
    from strongroom.guestfiles.tree import GuestPoint

    return restore_guest_files(GuestPoint(v, p, luks), opts)


def find(
    v: Vault, points: list[RecoveryPoint], pattern: str, as_json: bool, luks: bytes | None
) -> int:
    """``find PATTERN --point P...``: every volume of every disk of the points."""
    from strongroom.files import node_doc, shown_path
    from strongroom.guestfiles.browse import find_in_guest
    from strongroom.guestfiles.tree import GuestPoint, GuestTree

    docs: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    notes: list[tuple[str, str]] = []
    with v.read_lock():
        for p in points:
            trees = GuestTree(GuestPoint(v, p, luks), strict=False)
            for path, node in find_in_guest(trees, pattern):
                doc = {"point": p.point_id, "time": p.manifest.time, **node_doc(path, node)}
                docs.append(doc)
                if not as_json:
                    when = p.manifest.time[:19].replace("T", " ")
                    console().print(
                        f"{p.short_id}  {when}  {node.size:>12}  {escape(shown_path(path))}",
                        soft_wrap=True,
                    )
            failures += [(f"{p.short_id}:{path}", why) for path, why in trees.failures]
            notes += [(f"{p.short_id}:{path}", why) for path, why in trees.notes]
    if as_json:
        print_json(docs)
    elif not docs:
        console().print("no match")
    _failures(failures, notes, as_json)
    return EXIT_PARTIAL if failures else 0


def diff(
    v: Vault,
    old: RecoveryPoint,
    new: RecoveryPoint,
    as_json: bool,
    luks: bytes | None,
) -> int:
    """``diff POINT1 POINT2`` between two image points, file by file."""
    from strongroom.guestfiles.browse import diff_guest_points
    from strongroom.guestfiles.tree import GuestPoint

    if old.manifest.kind not in IMAGE_KINDS or new.manifest.kind not in IMAGE_KINDS:
        raise CLIError("diff compares two image points or two files points, not one of each")
    with v.read_lock():
        result = diff_guest_points(GuestPoint(v, old, luks), GuestPoint(v, new, luks))
    if as_json:
        print_json([c.to_dict() for c in result.changes])
    else:
        _print_changes(result.changes)
    _failures(result.failures, [], as_json)
    return EXIT_PARTIAL if result.failures else 0


def diff_live(
    v: Vault, p: RecoveryPoint, inside: str | None, live: str, as_json: bool, luks: bytes | None
) -> int:
    """``diff POINT /DISK/VOLUME/PATH --live DIR``."""
    from strongroom.guestfiles.browse import diff_guest_live
    from strongroom.guestfiles.tree import GuestPoint

    if inside is None:
        raise CLIError(
            "with an image point, --live needs the path inside the point to compare: "
            "diff POINT /DISK/VOLUME/PATH --live DIR"
        )
    with v.read_lock():
        changes = diff_guest_live(GuestPoint(v, p, luks), inside, live)
    if as_json:
        print_json([c.to_dict() for c in changes])
    else:
        _print_changes(changes)
    return 0


def _print_changes(changes: list[Any]) -> None:
    from strongroom.files import shown_path

    for c in changes:
        extra = f"  ({', '.join(c.fields)})" if c.fields else ""
        shown = escape(shown_path(c.path))
        console().print(f"{_DIFF_MARKS[c.change]} {shown}{extra}", soft_wrap=True)
    console().print(f"{len(changes)} change(s)")
