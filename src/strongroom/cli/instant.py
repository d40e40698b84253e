"""``strongroom serve`` and ``strongroom instant list|finalize|abort|resume``.

``serve`` exports a point's disks over NBD in the foreground until SIGINT or SIGTERM.  The
instant-recovery commands manage the background exports ``restore vm --instant`` starts
(see ``docs/instant.md``).  The engines are imported inside the commands.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from strongroom.cli.options import JsonOpt, PasswordFileOpt, VaultOpt, open_vault
from strongroom.cli.output import print_json, warn
from strongroom.records import dataclass

if TYPE_CHECKING:
    from strongroom.image.instant.tls import TLSFiles
    from strongroom.image.nbd.options import ServerTLS
    from strongroom.vault import RecoveryPoint, Vault

__all__ = ["parse_listen", "register"]

instant_app = typer.Typer(
    no_args_is_help=True, help="Instant recoveries: VMs running from the vault."
)


def register(app: typer.Typer) -> None:
    from strongroom.cli import instant_bg

    app.command("serve")(serve_cmd)
    instant_bg.register(instant_app)
    app.add_typer(instant_app, name="instant")


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise typer.BadParameter(f"{text!r} is not HOST:PORT")
    return host, int(port)


def resolve_point(v: Vault, spec: str, source: str | None) -> RecoveryPoint:
    from strongroom.errors import PointNotFound

    if spec != "latest":
        return v.resolve_point(spec, source=source)
    found = [
        p
        for p in v.points()
        if p.manifest.kind in ("vm", "disk") and (source is None or p.manifest.source == source)
    ]
    if not found:
        raise PointNotFound("no vm or disk recovery point" + (f" for {source!r}" if source else ""))
    return found[-1]


def serve_cmd(
    point: Annotated[str, typer.Argument(help="Point id, unique prefix or 'latest'.")],
    disk: Annotated[
        str | None, typer.Option("--disk", help="Serve only this disk (target such as vda).")
    ] = None,
    socket: Annotated[
        Path | None, typer.Option("--socket", help="Listen on this unix socket.")
    ] = None,
    listen: Annotated[
        str | None,
        typer.Option("--listen", help="Listen on HOST:PORT (plain TCP on loopback only)."),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="TLS: the server certificate (PEM).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="TLS: the certificate's key (PEM).")
    ] = None,
    tls_ca: Annotated[
        Path | None,
        typer.Option("--tls-ca", help="TLS: require client certificates signed by this CA."),
    ] = None,
    tls_psk: Annotated[
        Path | None,
        typer.Option("--tls-psk", help="TLS with pre-shared keys: a username:hexkey file."),
    ] = None,
    writable: Annotated[
        bool,
        typer.Option("--writable", help="Accept writes into local overlays (never the vault)."),
    ] = False,
    overlay_dir: Annotated[
        Path | None,
        typer.Option("--overlay-dir", help="Keep the overlays here (default: removed at exit)."),
    ] = None,
    source: Annotated[
        str | None, typer.Option("--source", help="With 'latest': the VM name or disk source.")
    ] = None,
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Serve a point's disks as NBD exports (named by target, or 'disk') until interrupted."""
    if (socket is None) == (listen is None):
        raise typer.BadParameter("give exactly one of --socket PATH or --listen HOST:PORT")
    if overlay_dir is not None and not writable:
        raise typer.BadParameter("--overlay-dir goes with --writable")
    tcp = parse_listen(listen) if listen is not None else None
    from strongroom.image.instant.tls import TLSFiles

    tls = _tls_context(tcp, TLSFiles(tls_cert, tls_key, tls_ca, tls_psk))
    v = open_vault(vault, password_file)
    from strongroom.image.instant.serve import PointServer, ServeOptions

    p = resolve_point(v, point, source)
    opts = ServeOptions(
        socket=socket.absolute() if socket else None,
        tcp=tcp,
        writable=writable,
        overlay_dir=overlay_dir,
        disk=disk,
        tls=tls,
    )
    with PointServer(v, p, opts) as server:
        uris = server.uris()
        if as_json:
            print_json(
                {
                    "point": p.point_id,
                    "exports": uris,
                    "overlays": [str(x) for x in server.overlay_paths()],
                }
            )
        else:
            for name, uri in uris.items():
                sys.stdout.write(f"{name} {uri}\n")
        sys.stdout.flush()
        while True:
            time.sleep(3600)


def _tls_context(tcp: tuple[str, int] | None, files: TLSFiles) -> ServerTLS | None:
    """Check the TLS options against the address; the server's context (None: plain)."""
    from strongroom.image.instant.tls import check_plain_allowed, server_context

    if (files.cert is None) != (files.key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    if files.ca is not None and files.cert is None:
        raise typer.BadParameter("--tls-ca goes with --tls-cert and --tls-key")
    if files.cert is not None and files.psk is not None:
        raise typer.BadParameter("give either --tls-cert/--tls-key or --tls-psk")
    if files.enabled and tcp is None:
        raise typer.BadParameter("the --tls-* options go with --listen")
    if tcp is not None and not files.enabled:
        check_plain_allowed(tcp[0])
    return server_context(files)


def open_with(location: str, passphrase: str) -> Vault:
    """Open the vault at ``location`` with ``passphrase`` (the background export's way)."""
    from strongroom.storage import open_backend
    from strongroom.vault import Vault
    from strongroom.vault.keys import SlotOpener

    backend = open_backend(location)
    try:
        opener = SlotOpener(backend, passphrase)
        opener.prepare()
        return Vault.open(backend, opener, warn=warn)
    except BaseException:
        backend.close()
        raise


def _absolute_location(location: str) -> str:
    return location if "://" in location else str(Path(location).absolute())


@dataclass
class InstantArgs:
    as_new: str | None  # None: --in-place
    force: bool
    disk_dir: Path | None
    connect: str | None
    source: str | None


def restore_instant(
    point: str, a: InstantArgs, vault: str | None, password_file: Path | None, as_json: bool
) -> None:
    """``restore vm POINT --instant (--as-new NAME | --in-place [--force])``."""
    from strongroom.cli.options import read_passphrase, vault_location
    from strongroom.cli.output import console, escape

    location = _absolute_location(vault_location(vault))
    passphrase = read_passphrase(password_file)
    v = open_with(location, passphrase)
    from strongroom.image.instant import recover
    from strongroom.image.instant.inplace import start_in_place

    p = resolve_point(v, point, a.source)
    uri = a.connect or (p.manifest.meta.get("libvirt") or {}).get("uri")
    common: dict[str, Any] = {"location": location, "passphrase": passphrase, "uri": uri}
    if a.as_new is None:
        record = start_in_place(v, p, disk_dir=a.disk_dir, force=a.force, **common)
    else:
        record = recover.start(v, p, name=a.as_new, disk_dir=a.disk_dir, **common)
    doc = recover.status(record.name)[0].to_dict()
    if as_json:
        print_json(doc)
        return
    for d in record.disks:
        console().print(f"{escape(d.target)} -> {escape(d.overlay)} (qcow2 over the vault)")
    console().print(
        f"{escape(record.name)} started from {p.point_id[:12]}; export pid {doc['pid']}, "
        f"log {escape(str(record.log_file))}; finish with `strongroom instant finalize "
        f"{escape(record.name)}`",
        soft_wrap=True,
    )


NameArg = Annotated[str, typer.Argument(help="The instant recovery (the new VM's name).")]


@instant_app.command("list")
def instant_list_cmd(as_json: JsonOpt = False) -> None:
    """Running instant recoveries: domain state, export state, bytes already local."""
    from strongroom.cli.output import console, escape, human_bytes
    from strongroom.image.instant import recover

    rows = [s.to_dict() for s in recover.status()]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console().print("no instant recoveries")
    for r in rows:
        console().print(
            f"[bold]{escape(r['name'])}[/] domain {escape(r['domain'])}, export {r['export']}"
            f"{' (pid ' + str(r['pid']) + ')' if r['pid'] else ''}, "
            f"{r['restarts']} restart(s) by {r['supervisor']}, point {r['point'][:12]}: "
            f"{human_bytes(r['bytes_local'])} of {human_bytes(r['virtual_size'])} local",
            soft_wrap=True,
        )


@instant_app.command("finalize")
def instant_finalize_cmd(name: NameArg) -> None:
    """Move all data into the local overlays while the VM runs, then stop the export."""
    from strongroom.cli.output import console, escape
    from strongroom.image.instant import recover

    record = recover.finalize(name)
    console().print(
        f"{escape(name)} runs from local disks: "
        + ", ".join(escape(d.overlay) for d in record.disks),
        soft_wrap=True,
    )
    if record.in_place and record.replaced:
        console().print(
            "removed the disks it replaced: " + ", ".join(map(escape, record.replaced)),
            soft_wrap=True,
        )


@instant_app.command("abort")
def instant_abort_cmd(name: NameArg) -> None:
    """Stop and remove the VM, its overlays and its export."""
    from strongroom.cli.output import console, escape
    from strongroom.image.instant import recover

    recover.abort(name)
    console().print(f"{escape(name)}: removed", soft_wrap=True)


@instant_app.command("resume")
def instant_resume_cmd(name: NameArg, password_file: PasswordFileOpt = None) -> None:
    """Restart the export of an instant recovery whose export died."""
    from strongroom.cli.options import read_passphrase
    from strongroom.cli.output import console, escape
    from strongroom.image.instant import recover

    pid = recover.resume(name, read_passphrase(password_file))
    console().print(f"{escape(name)}: export running again (pid {pid})", soft_wrap=True)
