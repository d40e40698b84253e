"""``strongroom vm list`` and the libvirt side of ``backup vm`` / ``restore vm|disk``.

Rule: a point taken through libvirt restores into libvirt (on ``--connect URI``, default the
URI it was taken from); a point taken from XML files restores to files, unless ``--connect``
is given, which restores it into libvirt.

The libvirt provider (the image engine, numpy, libvirt-python) is imported only when a
command connects, after the vault is open: every other command skips it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from strongroom.cli.options import JsonOpt, PasswordFileOpt, VaultOpt, open_vault
from strongroom.cli.output import console, escape, human_bytes, print_json

if TYPE_CHECKING:
    from strongroom.image.libvirt import LibvirtProvider
    from strongroom.vault import RecoveryPoint, Vault

__all__ = ["ConnectOpt", "libvirt_provider", "provider_for", "recorded_uri", "register"]

ConnectOpt = Annotated[
    str | None,
    typer.Option(
        "--connect",
        "-c",
        help="libvirt URI (default: LIBVIRT_DEFAULT_URI, else qemu:///system).",
    ),
]

vm_app = typer.Typer(no_args_is_help=True, help="VMs of a libvirt host.")


def register(app: typer.Typer) -> None:
    app.add_typer(vm_app, name="vm")


def recorded_uri(point: RecoveryPoint) -> str | None:
    """The libvirt URI a point was taken from; None for a point from XML files."""
    libvirt_meta: dict[str, Any] = point.manifest.meta.get("libvirt") or {}
    uri = libvirt_meta.get("uri")
    return str(uri) if uri else None


def libvirt_provider(uri: str | None) -> LibvirtProvider:
    """A connection to the libvirt host at ``uri`` (None: the default URI)."""
    from strongroom.image.libvirt import LibvirtProvider

    return LibvirtProvider(uri)


def provider_for(point: RecoveryPoint, connect: str | None) -> LibvirtProvider | None:
    """The libvirt provider a restore of ``point`` goes to (see the module rule), or None."""
    uri = connect or recorded_uri(point)
    if connect is None and uri is None:
        return None
    return libvirt_provider(uri)


def _open_optional_vault(vault: str | None, password_file: Any) -> Vault | None:
    return open_vault(vault, password_file) if vault else None


def _print_rows(rows: list[Any]) -> None:
    if not rows:
        console().print("no domains")
    for row in rows:
        disks = ", ".join(
            f"{d['target']} {d['format']}" + (f" {human_bytes(d['size'])}" if d["size"] else "")
            for d in row.disks
        )
        last = row.last_point
        point = f"{last['id'][:12]} {last['time'][:19]} {last['consistency']}" if last else "-"
        cp = f"{row.checkpoint} ({row.checkpoint_state})" if row.checkpoint else "none"
        console().print(
            f"[bold]{escape(row.name)}[/] {row.state}: {escape(disks) or 'no disks'}; "
            f"last point {point}; checkpoint {escape(cp)}",
            soft_wrap=True,
        )


@vm_app.command("list")
def vm_list_cmd(
    names: Annotated[list[str] | None, typer.Argument(help="Only these domains.")] = None,
    connect: ConnectOpt = None,
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List domains: state, disks, last recovery point (with a vault) and checkpoint state."""
    v = _open_optional_vault(vault, password_file)
    with libvirt_provider(connect) as provider:
        rows = provider.list(v, names or None)
    if as_json:
        print_json([r.to_dict() for r in rows])
    else:
        _print_rows(rows)
