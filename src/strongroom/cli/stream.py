"""``backup stdin --name NAME`` (a database dump through a pipe) and ``cat POINT PATH``.

A pipe hides its writer's exit code: in ``pg_dump db | strongroom backup stdin --name
db.sql`` a failed pg_dump only shows as a short or empty stream.  Run such pipelines under
``set -o pipefail`` (bash, zsh) so the pipeline fails; an empty stream is refused here
unless ``--allow-empty``.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from strongroom.cli.options import (
    CLIError,
    JsonOpt,
    NoLockOpt,
    PasswordFileOpt,
    VaultOpt,
    open_vault,
)
from strongroom.cli.output import console, escape, human_bytes, print_json


def register(app: typer.Typer, backup: typer.Typer) -> None:
    backup.command("stdin")(backup_stdin_cmd)
    app.command("cat")(cat_cmd)


def backup_stdin_cmd(
    name: Annotated[str, typer.Option("--name", help="File name in the point, e.g. db.sql.")],
    source: Annotated[
        str | None, typer.Option("--source", help="Source name (default: HOST:stdin:NAME).")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag for the point.")] = None,
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Store an empty stream (refused otherwise).")
    ] = False,
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Back up standard input as one file: `pg_dump db | strongroom backup stdin --name db.sql`
    (use `set -o pipefail`: a pipe does not tell whether the dump failed)."""
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise typer.BadParameter(
            f"{name!r} is not a file name (no '/', not empty, not . or ..)", param_hint="'--name'"
        )
    if source is not None and not source:
        raise typer.BadParameter("an empty value names nothing", param_hint="'--source'")
    if sys.stdin is None or sys.stdin.isatty():
        raise CLIError("standard input is a terminal: pipe the data in (cmd | strongroom ...)")
    v = open_vault(vault, password_file)
    from strongroom.files.stream import backup_stream

    stream = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)  # noqa: SIM115
    s = backup_stream(v, stream, name, source=source, tags=list(tag or []), allow_empty=allow_empty)
    if as_json:
        print_json(s.to_dict())
        return
    console().print(
        f"{escape(s.path)}: {human_bytes(s.size)} in {s.chunks} chunk(s), added "
        f"{human_bytes(s.bytes_added)} in {s.duration:.1f}s (source {escape(s.source)})",
        soft_wrap=True,
    )
    typer.echo(s.point_id)


def cat_cmd(
    point: Annotated[str, typer.Argument(help="Point id, unique prefix or 'latest'.")],
    path: Annotated[str, typer.Argument(help="The file's path in the point.")],
    source: Annotated[
        str | None, typer.Option("--source", help="With 'latest': only this source.")
    ] = None,
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    no_lock: NoLockOpt = False,
) -> None:
    """Write one file of a files point to standard output (every chunk verified)."""
    if not path:
        raise typer.BadParameter("an empty value names nothing", param_hint="'PATH'")
    v = open_vault(vault, password_file, no_lock=no_lock)
    from strongroom.files.stream import cat_file

    out = sys.stdout.buffer
    with v.read_lock():
        p = v.resolve_point(point, source=source, kind="files")
        try:
            cat_file(v, p, path, out.write)
            out.flush()
        except BrokenPipeError:
            # the reader went away (`| head`): say so once, and keep Python's own flush at
            # exit from failing again on the closed pipe
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            raise CLIError("standard output was closed before the end of the file") from None
