"""``mount POINT DIR``: a files point as a read-only FUSE file system, in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strongroom.cli.options import NoLockOpt, PasswordFileOpt, VaultOpt, open_vault
from strongroom.cli.output import human_bytes


def register(app: typer.Typer) -> None:
    app.command("mount")(mount_cmd)


def mount_cmd(
    point: Annotated[str, typer.Argument(help="Point id, unique prefix or 'latest'.")],
    mountpoint: Annotated[str, typer.Argument(metavar="DIR", help="An empty folder.")],
    source: Annotated[
        str | None, typer.Option("--source", help="With 'latest': only this source.")
    ] = None,
    allow_other: Annotated[
        bool,
        typer.Option("--allow-other", help="Let other users in (modes and owners still apply)."),
    ] = False,
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    luks_file: Annotated[
        Path | None,
        typer.Option("--luks-passphrase-file", help="Opens LUKS volumes inside an image point."),
    ] = None,
    no_lock: NoLockOpt = False,
) -> None:
    """Mount a point read-only at DIR until Ctrl-C or SIGTERM (then unmounted): a files
    point's tree, or an image point's /DISK/VOLUME/PATH."""
    if not mountpoint:
        raise typer.BadParameter("an empty value names nothing", param_hint="'DIR'")
    from strongroom.files.mount import check_mount_dir

    check_mount_dir(mountpoint)  # before the passphrase: a busy folder fails at once
    v = open_vault(vault, password_file, no_lock=no_lock)
    from strongroom.files.mount import mount_point

    with v.read_lock():
        p = v.resolve_point(point, source=source, kind="files" if point == "latest" else None)
    size = human_bytes(int(p.manifest.summary.get("logical_bytes", 0)))

    def ready() -> None:
        typer.echo(
            f"mounted {p.short_id} ({p.manifest.source}, {size}) at {mountpoint} read-only; "
            "Ctrl-C unmounts",
            err=True,
        )

    if p.manifest.kind == "files":
        mount_point(v, p, mountpoint, allow_other=allow_other, on_ready=ready)
        return
    from strongroom.cli import guest
    from strongroom.files.mount import serve
    from strongroom.guestfiles.mount import GuestMountTree
    from strongroom.guestfiles.tree import GuestPoint

    with v.read_lock():
        tree = GuestMountTree(GuestPoint(v, p, guest.luks_passphrase(luks_file)))
        serve(tree, mountpoint, p.short_id, allow_other, ready)
