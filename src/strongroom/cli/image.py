"""Commands for image-level backup and restore of disks and VMs.

``backup vm --xml DOMAIN.xml...`` (offline) or ``backup vm NAME... [--connect URI]``
(libvirt), ``backup disk IMAGE``, ``restore vm POINT --in-place | --as-new NAME`` and
``restore disk POINT [DISK] --to PATH [--attach VM.xml] | --attach-to DOMAIN``.  Which
restores go to libvirt: see :mod:`strongroom.cli.vm`.

The image engine (and through it numpy) and rich's progress bar are imported inside the
commands, after the vault is open: loading the CLI stays cheap and the key derivation runs
while little is in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from strongroom.cli import vm as vm_cmds
from strongroom.cli.options import JsonOpt, NoLockOpt, PasswordFileOpt, VaultOpt, open_vault
from strongroom.cli.output import console, escape, human_bytes, is_tty, print_json
from strongroom.errors import PointNotFound

if TYPE_CHECKING:
    from strongroom.image import BackupSummary, RestoreOptions, RestoreSummary
    from strongroom.image.libvirt import LibvirtProvider
    from strongroom.vault import RecoveryPoint, Vault

ProgressFn = Callable[[str, int, int], None]

TagOpt = Annotated[list[str] | None, typer.Option("--tag", help="Tag for the point.")]
ChunkOpt = Annotated[
    str, typer.Option("--chunk-size", help="Chunk size: a power of two, 64K to 16M.")
]
ViaNBDOpt = Annotated[
    bool, typer.Option("--via-nbd", help="Read raw images through qemu-nbd too.", hidden=True)
]
ForceReadOpt = Annotated[
    bool,
    typer.Option(
        "--force-read",
        help="Read every disk, even an image file whose metadata matches the last point's.",
    ),
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Replace existing targets; write disks in use.")
]
VerifyOpt = Annotated[
    bool, typer.Option("--verify", help="Re-read what was written and compare hashes.")
]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", "-f", help="Image format: raw, qcow2, vmdk, vhdx, vpc or vdi."),
]
SourceOpt = Annotated[
    str | None, typer.Option("--source", help="With 'latest': the VM name or disk source.")
]


def register(app: typer.Typer, backup: typer.Typer, restore: typer.Typer) -> None:
    """Add this group's commands to the top-level, ``backup`` and ``restore`` apps."""
    backup.command("vm")(backup_vm_cmd)
    backup.command("disk")(backup_disk_cmd)
    restore.command("vm")(restore_vm_cmd)
    restore.command("disk")(restore_disk_cmd)


@contextmanager
def _progress(enabled: bool) -> Iterator[ProgressFn | None]:
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}[/]"),
        BarColumn(bar_width=24),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console(), transient=True) as bar:
        tasks: dict[str, int] = {}

        def update(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = int(bar.add_task(escape(label), total=total or None))
            bar.update(tasks[label], completed=done, total=total or None)  # type: ignore[arg-type]

        yield update


def _chunk_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    try:
        if t and t[-1] in units:
            return int(t[:-1]) * units[t[-1]]
        return int(t)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a size such as 1M or 512K") from None


def _print_backup(s: BackupSummary) -> None:
    for d in s.disks:
        st = d["stats"]
        name = d["target"] or Path(d["source"]).name
        why = d.get("tracking", {}).get("reason")
        console().print(
            f"{escape(name)}: {d['format']}, {human_bytes(d['virtual_size'])} virtual, "
            f"read {human_bytes(st['bytes_read'])}, new {human_bytes(st['bytes_new'])} "
            f"({d['read_mode']}{', ' + why if why else ''})",
            soft_wrap=True,
        )
    for sk in s.skipped:
        console().print(f"skipped {escape(sk['target'])}: {escape(sk['reason'])}", soft_wrap=True)
    rate = s.bytes_read / s.duration if s.duration else 0
    console().print(
        f"{s.kind} {escape(s.source)}: read {human_bytes(s.bytes_read)}, "
        f"added {human_bytes(s.bytes_new)} ({human_bytes(s.bytes_stored)} stored) "
        f"in {s.duration:.1f}s, {human_bytes(rate)}/s, {s.consistency}",
        soft_wrap=True,
    )
    typer.echo(s.point_id)


ConsistencyOpt = Annotated[
    str,
    typer.Option(
        "--consistency", help="libvirt: app (freeze via the guest agent), crash, or auto."
    ),
]


def backup_vm_cmd(
    names: Annotated[
        list[str] | None, typer.Argument(help="libvirt domains to back up (running or shut off).")
    ] = None,
    xml: Annotated[
        list[Path] | None,
        typer.Option("--xml", help="libvirt domain XML of a shut-off VM (repeatable)."),
    ] = None,
    connect: vm_cmds.ConnectOpt = None,
    consistency: ConsistencyOpt = "auto",
    full: Annotated[
        bool, typer.Option("--full", help="libvirt: read every disk in full, start a new chain.")
    ] = False,
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    tag: TagOpt = None,
    chunk_size: ChunkOpt = "1M",
    via_nbd: ViaNBDOpt = False,
    force_read: ForceReadOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Back up VMs: libvirt domains by NAME, or shut-off VMs from their domain XML."""
    if bool(names) == bool(xml):
        raise typer.BadParameter("give domain NAMEs (libvirt) or --xml FILEs, not both")
    if names and force_read:
        raise typer.BadParameter("--force-read goes with --xml (libvirt domains: --full)")
    if xml and (connect is not None or full or consistency != "auto"):
        raise typer.BadParameter("--connect, --full and --consistency go with domain NAMEs")
    if consistency not in ("auto", "app", "crash"):
        raise typer.BadParameter("--consistency must be auto, app or crash")
    size = _chunk_size(chunk_size)
    v = open_vault(vault, password_file)
    from strongroom.image import BackupOptions, backup_vm

    opts = BackupOptions(size, list(tag or []), direct_raw=not via_nbd, force_read=force_read)
    summaries = []
    provider = vm_cmds.libvirt_provider(connect) if names else None
    try:
        for item in names or xml or []:
            with _progress(is_tty() and not as_json) as progress:
                if provider is not None:
                    summary = provider.backup(
                        v, str(item), opts, consistency=consistency, full=full, progress=progress
                    )
                else:
                    summary = backup_vm(v, Path(item), opts, progress)
            summaries.append(summary)
            if not as_json:
                _print_backup(summary)
    finally:
        if provider is not None:
            provider.close()
    if as_json:
        docs = [s.to_dict() for s in summaries]
        print_json(docs[0] if len(docs) == 1 else docs)


def backup_disk_cmd(
    image: Annotated[Path, typer.Argument(help="Disk image file or block device.")],
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    source: Annotated[
        str | None, typer.Option("--source", help="Source name (default: the image's path).")
    ] = None,
    fmt: FormatOpt = None,
    tag: TagOpt = None,
    chunk_size: ChunkOpt = "1M",
    via_nbd: ViaNBDOpt = False,
    force_read: ForceReadOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Back up a single disk image (format detected by qemu-img unless --format)."""
    size = _chunk_size(chunk_size)
    v = open_vault(vault, password_file)
    from strongroom.image import BackupOptions, backup_disk

    opts = BackupOptions(size, list(tag or []), direct_raw=not via_nbd, force_read=force_read)
    with _progress(is_tty() and not as_json) as progress:
        summary = backup_disk(v, image, opts, fmt=fmt, source=source, progress=progress)
    if as_json:
        print_json(summary.to_dict())
    else:
        _print_backup(summary)


def _resolve(v: Vault, spec: str, source: str | None, kinds: tuple[str, ...]) -> RecoveryPoint:
    if spec != "latest":
        return v.resolve_point(spec, source=source)
    found = [
        p
        for p in v.points()
        if p.manifest.kind in kinds and (source is None or p.manifest.source == source)
    ]
    if not found:
        what = " or ".join(kinds)
        raise PointNotFound(f"no {what} recovery point" + (f" for {source!r}" if source else ""))
    return found[-1]


def _print_restore(s: RestoreSummary) -> None:
    for d in s.disks:
        name = d.target or "disk"
        parts = [f"wrote {human_bytes(d.bytes_written)}"]
        if d.mode == "in-place":
            parts.append(f"{d.chunks_written + d.chunks_zeroed} chunk(s) changed")
            parts.append(f"{d.chunks_unchanged} unchanged")
        if d.verified:
            parts.append("verified")
        console().print(
            f"{escape(name)} -> {escape(d.path)} ({d.format}, {d.mode}): {', '.join(parts)}",
            soft_wrap=True,
        )
    if s.xml_path:
        console().print(f"domain XML: {escape(s.xml_path)}", soft_wrap=True)
    if s.attached_to:
        console().print(
            f"attached as {s.attached_target} to {escape(s.attached_to)}", soft_wrap=True
        )
    console().print(
        f"restored {len(s.disks)} disk(s) from {s.point_id[:12]}: "
        f"{human_bytes(s.bytes_written)} written in {s.duration:.1f}s",
        soft_wrap=True,
    )


def restore_vm_cmd(
    point: Annotated[str, typer.Argument(help="Point id, unique prefix or 'latest'.")],
    in_place: Annotated[
        bool, typer.Option("--in-place", help="Write the disks and XML back where they were.")
    ] = False,
    as_new: Annotated[
        str | None, typer.Option("--as-new", help="Restore as a new VM with this name.")
    ] = None,
    disk_dir: Annotated[
        Path | None,
        typer.Option("--disk-dir", help="Folder for the new VM's disks and XML."),
    ] = None,
    fmt: FormatOpt = None,
    force: ForceOpt = False,
    verify: VerifyOpt = False,
    connect: vm_cmds.ConnectOpt = None,
    start: Annotated[
        bool, typer.Option("--start", help="libvirt: start the restored domain.")
    ] = False,
    instant: Annotated[
        bool,
        typer.Option("--instant", help="Start the VM now, its disks read from the vault."),
    ] = False,
    source: SourceOpt = None,
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    no_lock: NoLockOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Restore a VM: in place (only changed chunks written) or as a new VM.

    A point taken through libvirt goes back into libvirt (``--connect`` picks the host); a
    point from XML files goes to files unless ``--connect`` is given."""
    if in_place == (as_new is not None):
        raise typer.BadParameter("give exactly one of --in-place or --as-new NAME")
    if instant:
        if fmt is not None or verify or no_lock or start or (force and not in_place):
            raise typer.BadParameter(
                "--instant goes with --as-new NAME or --in-place [--force] (not --format, "
                "--verify, --start or --no-lock)"
            )
        from strongroom.cli.instant import InstantArgs, restore_instant

        args = InstantArgs(as_new, force, disk_dir, connect, source)
        restore_instant(point, args, vault, password_file, as_json)
        return
    if in_place and (disk_dir is not None or fmt is not None):
        raise typer.BadParameter("--disk-dir and --format go with --as-new")
    v = open_vault(vault, password_file, no_lock=no_lock)
    from strongroom.image import RestoreOptions

    p = _resolve(v, point, source, ("vm",))
    provider = vm_cmds.provider_for(p, connect)
    if provider is None and start:
        raise typer.BadParameter("--start restores into libvirt: add --connect URI")
    try:
        with _progress(is_tty() and not as_json) as progress:
            opts = RestoreOptions(force=force, verify=verify, progress=progress)
            summary = _restore_vm(v, p, provider, opts, as_new, disk_dir, fmt, start)
    finally:
        if provider is not None:
            provider.close()
    if as_json:
        print_json(summary.to_dict())
    else:
        _print_restore(summary)


def _restore_vm(
    v: Vault,
    p: RecoveryPoint,
    provider: LibvirtProvider | None,
    opts: RestoreOptions,
    as_new: str | None,
    disk_dir: Path | None,
    fmt: str | None,
    start: bool,
) -> RestoreSummary:
    from strongroom.image import restore_vm_as_new, restore_vm_in_place

    if provider is not None and as_new is not None:
        return provider.define_as_new(v, p, as_new, opts, disk_dir=disk_dir, fmt=fmt, start=start)
    if provider is not None:
        return provider.restore_in_place(v, p, opts, start=start)
    if as_new is not None:
        return restore_vm_as_new(v, p, as_new, opts, disk_dir=disk_dir, fmt=fmt)
    return restore_vm_in_place(v, p, opts)


def restore_disk_cmd(
    point: Annotated[str, typer.Argument(help="Point id, unique prefix or 'latest'.")],
    disk: Annotated[
        str | None, typer.Argument(help="Which disk of a VM point: target (vda) or path.")
    ] = None,
    to: Annotated[Path | None, typer.Option("--to", help="Image file or block device.")] = None,
    fmt: FormatOpt = None,
    attach: Annotated[
        Path | None,
        typer.Option("--attach", help="Add the disk to this VM's XML at the next free target."),
    ] = None,
    attach_to: Annotated[
        str | None,
        typer.Option("--attach-to", help="libvirt: attach the disk to this domain (and live)."),
    ] = None,
    connect: vm_cmds.ConnectOpt = None,
    force: ForceOpt = False,
    verify: VerifyOpt = False,
    source: SourceOpt = None,
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    no_lock: NoLockOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Restore one disk to a path, in any format; optionally attach it to another VM."""
    if attach is not None and attach_to is not None:
        raise typer.BadParameter(
            "--attach (an XML file) and --attach-to (libvirt) exclude each other"
        )
    if to is None and attach_to is None:
        raise typer.BadParameter("--to PATH is required (or --attach-to DOMAIN)")
    v = open_vault(vault, password_file, no_lock=no_lock)
    from strongroom.image import RestoreOptions, restore_disk

    p = _resolve(v, point, source, ("vm", "disk"))
    with _progress(is_tty() and not as_json) as progress:
        opts = RestoreOptions(force=force, verify=verify, progress=progress)
        if attach_to is not None:
            with vm_cmds.libvirt_provider(connect or vm_cmds.recorded_uri(p)) as provider:
                summary = provider.attach(v, p, disk, attach_to, opts, to=to, fmt=fmt)
        else:
            assert to is not None
            summary = restore_disk(v, p, disk, to, opts, fmt=fmt, attach=attach)
    if as_json:
        print_json(summary.to_dict())
    else:
        _print_restore(summary)
