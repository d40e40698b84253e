"""``strongroom key``: list, add, remove and change the passphrases that open the vault."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strongroom.cli.options import (
    CLIError,
    JsonOpt,
    PasswordFileOpt,
    VaultOpt,
    open_vault,
    passphrase_from_file,
)
from strongroom.cli.output import Table, console, print_json

app = typer.Typer(no_args_is_help=True)

NewPasswordFileOpt = Annotated[
    str | None,
    typer.Option(
        "--new-password-file", help="Read the new passphrase from a file (default: prompt)."
    ),
]


def _new_passphrase(path: str | None) -> str:
    import getpass
    import sys

    if path is not None:
        return passphrase_from_file(Path(path))
    if not sys.stdin.isatty():
        raise CLIError("no new passphrase: use --new-password-file")
    first = getpass.getpass("new passphrase: ")
    if not first or getpass.getpass("repeat new passphrase: ") != first:
        raise CLIError("the new passphrases are empty or do not match")
    return first


@app.command("list")
def list_keys(
    vault: VaultOpt = None, password_file: PasswordFileOpt = None, as_json: JsonOpt = False
) -> None:
    """List key slots; the one that opened the vault is marked."""
    v = open_vault(vault, password_file)
    slots = v.list_keys()
    if as_json:
        print_json(
            [
                {
                    "id": s.slot_id,
                    "current": s.slot_id == v.slot_id,
                    "created": s.created,
                    "host": s.host,
                    "user": s.user,
                    "label": s.label,
                }
                for s in slots
            ]
        )
        return
    table = Table(" ", "id", "created", "user@host", "label")
    for s in slots:
        table.add_row(
            "*" if s.slot_id == v.slot_id else "",
            s.slot_id,
            s.created,
            f"{s.user}@{s.host}",
            s.label,
        )
    table.print()


@app.command("add")
def add_key(
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    new_password_file: NewPasswordFileOpt = None,
    label: Annotated[str, typer.Option(help="A note for this key slot.")] = "",
) -> None:
    """Add a passphrase that also opens the vault."""
    v = open_vault(vault, password_file)
    slot_id = v.add_key(_new_passphrase(new_password_file), label=label)
    console().print(f"added key slot {slot_id}")


@app.command("remove")
def remove_key(slot_id: str, vault: VaultOpt = None, password_file: PasswordFileOpt = None) -> None:
    """Remove a key slot (not the last one, nor the one in use)."""
    v = open_vault(vault, password_file)
    v.remove_key(slot_id)
    console().print(f"removed key slot {slot_id}")


@app.command("passwd")
def passwd(
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    new_password_file: NewPasswordFileOpt = None,
) -> None:
    """Change the passphrase of the key slot in use."""
    v = open_vault(vault, password_file)
    slot_id = v.change_passphrase(_new_passphrase(new_password_file))
    console().print(f"passphrase changed (new key slot {slot_id})")
