"""``strongroom copy --from VAULT``: copy points into ``--vault`` (the offsite copy of the
3-2-1 rule), between vaults with other passphrases and backends; see
:mod:`strongroom.vault.copy`."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from strongroom.cli.options import (
    CLIError,
    JsonOpt,
    PasswordFileOpt,
    VaultOpt,
    open_vault,
    passphrase_from_command,
    passphrase_from_file,
)
from strongroom.cli.output import console, escape, human_bytes, print_json

if TYPE_CHECKING:
    from strongroom.vault import RecoveryPoint, Vault

FROM_PASSWORD_ENV = "STRONGROOM_FROM_PASSWORD"
KINDS = ("vm", "disk", "files")


def register(app: typer.Typer) -> None:
    app.command("copy")(copy_cmd)


def _time(text: str, option: str) -> datetime:
    """An ISO date or date and time; without a zone it is local time."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a time such as 2025-01-31 or 2025-01-31T12:00", param_hint=option
        ) from None
    return when.astimezone(UTC) if when.tzinfo is None else when


def _source_passphrase(file: Path | None, command: str | None) -> str:
    if file is not None and command is not None:
        raise CLIError("give --from-password-file or --from-password-command, not both")
    if command is not None:
        return passphrase_from_command(command)
    if file is not None:
        return passphrase_from_file(file)
    env = os.environ.get(FROM_PASSWORD_ENV)
    if env:
        return env
    import getpass
    import sys

    if not sys.stdin.isatty():
        raise CLIError(
            "no passphrase for the source vault: use --from-password-file, "
            f"--from-password-command or {FROM_PASSWORD_ENV}"
        )
    return getpass.getpass("source vault passphrase: ")


def _same_place(location: str, described: str) -> bool:
    """Whether ``location`` names the vault described (a path, however written)."""
    if "://" in location:
        return location.rstrip("/") == described.rstrip("/")
    return os.path.realpath(location) == os.path.realpath(described)


def _open_source(location: str, passphrase: str) -> Vault:
    from strongroom.cli.output import warn
    from strongroom.storage import open_backend
    from strongroom.vault import Vault
    from strongroom.vault.keys import SlotOpener

    backend = open_backend(location)
    try:
        return Vault.open(backend, SlotOpener(backend, passphrase), warn=warn)
    except BaseException:
        backend.close()
        raise


def copy_cmd(
    from_vault: Annotated[
        str, typer.Option("--from", help="The vault to copy from: a path or URL.")
    ],
    from_password_file: Annotated[
        Path | None,
        typer.Option("--from-password-file", help=f"Its passphrase (else {FROM_PASSWORD_ENV})."),
    ] = None,
    from_password_command: Annotated[
        str | None,
        typer.Option("--from-password-command", help="A command printing its passphrase."),
    ] = None,
    source: Annotated[str | None, typer.Option("--source", help="Only this source.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only vm, disk or files.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only points taken at or after this time.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Only points taken before this time.")
    ] = None,
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy recovery points from another vault into --vault; points already copied are
    skipped, so an interrupted copy resumes."""
    if kind is not None and kind not in KINDS:
        raise typer.BadParameter("must be vm, disk or files", param_hint="'--kind'")
    low = _time(since, "'--since'") if since else None
    high = _time(until, "'--until'") if until else None
    if not from_vault:
        raise typer.BadParameter("an empty value names nothing", param_hint="'--from'")
    dst = open_vault(vault, password_file)
    if _same_place(from_vault, dst.backend.describe()):
        raise CLIError("the source and the destination are the same vault")
    src = _open_source(from_vault, _source_passphrase(from_password_file, from_password_command))
    from strongroom.vault.copy import copy_points

    def wanted(p: RecoveryPoint) -> bool:
        m = p.manifest
        return (
            (source is None or m.source == source)
            and (kind is None or m.kind == kind)
            and (low is None or m.timestamp >= low)
            and (high is None or m.timestamp < high)
        )

    def told(p: RecoveryPoint, what: str) -> None:
        if not as_json:
            console().print(
                f"{what} {p.short_id} {p.manifest.kind} {escape(p.manifest.source)} "
                f"{p.manifest.time[:19]}",
                soft_wrap=True,
            )

    report = copy_points(src, dst, [p for p in src.points() if wanted(p)], told)
    if as_json:
        print_json(
            {
                "copied": [{"from": a, "point": b} for a, b in report.copied],
                "skipped": [{"from": a, "point": b} for a, b in report.skipped],
                "chunks_read": report.chunks_read,
                "chunks_new": report.chunks_new,
                "bytes_added": report.bytes_added,
            }
        )
        return
    console().print(
        f"copied {len(report.copied)} point(s), {len(report.skipped)} already there; read "
        f"{report.chunks_read} chunk(s), stored {report.chunks_new} new "
        f"({human_bytes(report.bytes_added)})"
    )
