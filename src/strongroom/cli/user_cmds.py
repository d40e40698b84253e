"""``strongroom user add``: dashboard users of a vault server (admin token, through the API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strongroom.cli.options import JsonOpt
from strongroom.cli.output import print_json
from strongroom.cli.server_cmds import ServerOpt, TokenFileOpt
from strongroom.errors import ServerError

user_app = typer.Typer(
    no_args_is_help=True, help="Dashboard users of a vault server (admin token)."
)


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")


def _password(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ServerError(f"cannot read the password file {path}: {exc}") from None
    password = text.rstrip("\r\n")
    if not password:
        raise ServerError(f"the password file {path} is empty")
    return password


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    role: Annotated[str, typer.Option("--role", help="admin, operator or viewer.")],
    password_file: Annotated[
        Path, typer.Option("--password-file", help="A file holding the user's password.")
    ],
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a user who logs in to the dashboard served at the server's address."""
    from strongroom.server.client import AdminClient

    password = _password(password_file)
    client = AdminClient(server, token_file)
    try:
        doc = client.add_user(name, role, password)
    finally:
        client.close()
    if as_json:
        print_json(doc)
    else:
        typer.echo(f"added user {doc['user']} ({doc['role']})")
