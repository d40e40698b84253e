"""Options every vault command takes, and opening the vault they name.

The storage and vault modules are imported when a vault is opened, not when the CLI loads,
so ``--help`` and usage errors stay cheap (see ``strongroom.cli.main``).
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from strongroom.cli.output import warn
from strongroom.errors import StrongroomError

if TYPE_CHECKING:
    from strongroom.vault import Vault


class CLIError(StrongroomError):
    """A problem with how the command was called (missing vault, no passphrase)."""


VaultOpt = Annotated[
    str | None,
    typer.Option(
        "--vault", "-r", envvar="STRONGROOM_VAULT", help="Vault: a path, azure://C/P or s3://B/P."
    ),
]
PasswordFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        envvar="STRONGROOM_PASSWORD_FILE",
        help="Read the passphrase from a file.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def vault_location(vault: str | None) -> str:
    if not vault:
        raise CLIError("no vault given: use --vault PATH|URL or set STRONGROOM_VAULT")
    return vault


def read_passphrase(
    password_file: Path | None, *, confirm: bool = False, prompt: str = "passphrase"
) -> str:
    """From STRONGROOM_PASSWORD, the password file, or a prompt on a terminal."""
    env = os.environ.get("STRONGROOM_PASSWORD")
    if env is not None:
        return env
    if password_file is not None:
        try:
            return password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise CLIError(f"cannot read password file {password_file}: {exc.strerror}") from None
    if not sys.stdin.isatty():
        raise CLIError(
            "no passphrase: set STRONGROOM_PASSWORD or STRONGROOM_PASSWORD_FILE, "
            "or use --password-file"
        )
    first = getpass.getpass(f"{prompt}: ")
    if confirm and getpass.getpass(f"repeat {prompt}: ") != first:
        raise CLIError("the passphrases do not match")
    if not first:
        raise CLIError("empty passphrase")
    return first


def open_vault(vault: str | None, password_file: Path | None, *, strict: bool = False) -> Vault:
    """Open the vault the options name.  The passphrase's key is derived first, while only
    typer, the storage layer and Argon2 are loaded: its memory (32 MiB by default) then adds
    to a small base instead of to cryptography, numpy and the engines (issue 7).

    Opened leniently: an index object, recovery point or tombstone that fails to verify is
    skipped with a warning on stderr (``check`` reports it, ``check --repair`` removes it),
    so one junk object does not stop every command."""
    from strongroom.storage import open_backend
    from strongroom.vault.keys import SlotOpener

    location = vault_location(vault)
    backend = open_backend(location)
    try:
        opener = SlotOpener(backend, read_passphrase(password_file))
        opener.prepare()
        from strongroom.vault import Vault

        return Vault.open(backend, opener, strict=strict, warn=warn)
    except BaseException:
        backend.close()
        raise
