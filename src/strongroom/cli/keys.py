"""``strongroom key``: list, add, remove and change the passphrases and key files that open
the vault."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

if TYPE_CHECKING:
    from strongroom.vault import Vault

app = typer.Typer(no_args_is_help=True)

NewPasswordFileOpt = Annotated[
    str | None,
    typer.Option(
        "--new-password-file", help="Read the new passphrase from a file (default: prompt)."
    ),
]


NewKeyFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--new-key-file",
        help="Make a key file here (a random 256-bit key, mode 0600; not overwritten) and a "
        "slot it opens: for unattended hosts, with no passphrase derivation per command.",
    ),
]


def _write_key_file(path: Path, text: str) -> None:
    """The key file, durably, readable by its owner only; an existing file is never replaced."""
    from strongroom.storage.local import fsync_dir  # loaded by opening the vault already

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise CLIError(f"cannot create key file {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(text + "\n")
            out.flush()
            os.fsync(out.fileno())
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        raise CLIError(f"cannot write key file {path}: {exc.strerror}") from None


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
                    "kind": "key file" if s.key_file else "passphrase",
                    "created": s.created,
                    "host": s.host,
                    "user": s.user,
                    "label": s.label,
                }
                for s in slots
            ]
        )
        return
    table = Table(" ", "id", "kind", "created", "user@host", "label")
    for s in slots:
        table.add_row(
            "*" if s.slot_id == v.slot_id else "",
            s.slot_id,
            "key file" if s.key_file else "passphrase",
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
    new_key_file: NewKeyFileOpt = None,
    label: Annotated[str, typer.Option(help="A note for this key slot.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Add a passphrase, or a key file, that also opens the vault."""
    if new_key_file is not None and new_password_file is not None:
        raise CLIError("give --new-password-file or --new-key-file, not both")
    if new_key_file is not None:
        slot_id = _add_key_file(new_key_file, open_vault(vault, password_file), label)
        done = f"added key slot {slot_id} (key file {new_key_file}): open the vault with "
        _report(as_json, done + f"--password-file {new_key_file}", slot_id, new_key_file)
        return
    v = open_vault(vault, password_file)
    slot_id = v.add_key(_new_passphrase(new_password_file), label=label)
    _report(as_json, f"added key slot {slot_id}", slot_id)


def _add_key_file(path: Path, v: Vault, label: str) -> str:
    """The file first, then its slot: a failure leaves neither a slot without its file nor
    (removed again) a file without its slot."""
    from strongroom.vault.keyfile import new_key_text

    _, text = new_key_text()
    _write_key_file(path, text)
    try:
        return v.add_key_file(text, label or f"key file {path.name}")
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def _report(as_json: bool, text: str, slot_id: str, key_file: Path | None = None) -> None:
    if as_json:
        doc: dict[str, object] = {"slot": slot_id}
        if key_file is not None:
            doc["key_file"] = str(key_file)
        print_json(doc)
    else:
        console().print(text)


@app.command("remove")
def remove_key(
    slot_id: str,
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a key slot (not the last one, nor the one in use)."""
    v = open_vault(vault, password_file)
    v.remove_key(slot_id)
    _report(as_json, f"removed key slot {slot_id}", slot_id)


@app.command("passwd")
def passwd(
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    new_password_file: NewPasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change the passphrase of the key slot in use."""
    v = open_vault(vault, password_file)
    slot_id = v.change_passphrase(_new_passphrase(new_password_file))
    _report(as_json, f"passphrase changed (new key slot {slot_id})", slot_id)
