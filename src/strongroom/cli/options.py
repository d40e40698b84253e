"""Options every vault command takes, and opening the vault they name.

The storage and vault modules are imported when a vault is opened, not when the CLI loads,
so ``--help`` and usage errors stay cheap (see ``strongroom.cli.main``).
"""

from __future__ import annotations

import gc
import getpass
import os
import sys
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from strongroom.cli.globalopts import GIVEN, TOKEN_ENV, TOKEN_FILE_ENV
from strongroom.cli.output import warn
from strongroom.errors import StrongroomError

if TYPE_CHECKING:
    from strongroom.vault import Vault


# The zstd levels a vault takes (strongroom.vault.config.COMPRESSION_LEVELS: a test checks),
# written out so that loading the CLI does not load the vault: `init` and `settings` refuse
# others as usage errors.
COMPRESSION_LEVEL_MIN = 1
COMPRESSION_LEVEL_MAX = 19


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
        help="Read the passphrase from a file (else STRONGROOM_PASSWORD_FILE).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
NoLockOpt = Annotated[
    bool,
    typer.Option(
        "--no-lock",
        help="Read without writing a lock (automatic when the vault is read-only or full).",
    ),
]


def vault_location(vault: str | None) -> str:
    """``--vault`` (or STRONGROOM_VAULT), else the profile's vault; the profile's token file
    is used for a vault server unless the command line or the environment names a token."""
    profile = GIVEN.profile()
    if profile.token_file is not None and not (
        os.environ.get(TOKEN_ENV) or os.environ.get(TOKEN_FILE_ENV)
    ):
        os.environ[TOKEN_FILE_ENV] = str(profile.token_file)  # put back by globalopts.session
    vault = vault or profile.vault
    if not vault:
        raise CLIError("no vault given: use --vault PATH|URL, set STRONGROOM_VAULT or a profile")
    return vault


def passphrase_from_file(path: Path) -> str:
    """The passphrase a file holds (one trailing line break dropped); an empty, unreadable or
    non-UTF-8 file is an error, so a file not yet written never becomes an empty passphrase."""
    try:
        text = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise CLIError(f"cannot read password file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CLIError(f"password file {path} is not UTF-8 text") from None
    if not text:
        raise CLIError(f"password file {path} is empty")
    _check_key_file_mode(path, text)
    return text


def _check_key_file_mode(path: Path, text: str) -> None:
    """Warn when a key file (``key add --new-key-file``) can be read by others: unlike a
    passphrase, its line alone opens the vault, from anywhere, without a guess."""
    from strongroom.vault.keyfile import slot_of

    if slot_of(text) is None:
        return
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & 0o077:
        warn(f"key file {path} can be read by other users (mode {mode & 0o777:o}): chmod 600 it")


def passphrase_from_command(command: str) -> str:
    """The first line a command prints (as restic's --password-command: split like a shell
    would, run without one; stdin and stderr stay the terminal's)."""
    import shlex
    import subprocess

    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise CLIError(f"password command {command!r}: {exc}") from None
    if not argv:
        raise CLIError("password command is empty")
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, check=False)
    except OSError as exc:
        raise CLIError(f"password command {argv[0]!r} cannot run: {exc.strerror}") from None
    if done.returncode != 0:
        raise CLIError(f"password command {argv[0]!r} failed (exit {done.returncode})")
    try:
        first = done.stdout.decode("utf-8").splitlines()[0] if done.stdout else ""
    except UnicodeDecodeError:
        raise CLIError(f"password command {argv[0]!r} printed no UTF-8 text") from None
    if not first:
        raise CLIError(f"password command {argv[0]!r} printed no passphrase")
    return first


def _one_of(file: Path | None, command: str | None, where: str) -> str | None:
    if file is not None and command is not None:
        raise CLIError(f"{where}: give a password file or a password command, not both")
    if command is not None:
        return passphrase_from_command(command)
    return passphrase_from_file(file) if file is not None else None


def _from_environment() -> str | None:
    env = os.environ.get("STRONGROOM_PASSWORD")
    if env is not None:
        if not env:
            raise CLIError("STRONGROOM_PASSWORD is set but empty")
        return env
    file = os.environ.get("STRONGROOM_PASSWORD_FILE") or None
    command = os.environ.get("STRONGROOM_PASSWORD_COMMAND") or None
    return _one_of(Path(file) if file else None, command, "the environment")


def read_passphrase(
    password_file: Path | None, *, confirm: bool = False, prompt: str = "passphrase"
) -> str:
    """Never empty.  The command line (``--password-file`` or ``--password-command``) wins
    over the environment (STRONGROOM_PASSWORD, STRONGROOM_PASSWORD_FILE,
    STRONGROOM_PASSWORD_COMMAND), which wins over the profile; else a prompt on a terminal."""
    found = _one_of(password_file, GIVEN.password_command, "the command line")
    if found is None:
        found = _from_environment()
    if found is None:
        profile = GIVEN.profile()
        found = _one_of(profile.password_file, profile.password_command, f"profile {profile.name}")
    if found is not None:
        return found
    if not sys.stdin.isatty():
        raise CLIError(
            "no passphrase: use --password-file or --password-command, set "
            "STRONGROOM_PASSWORD[_FILE|_COMMAND], or give one in a profile"
        )
    first = getpass.getpass(f"{prompt}: ")
    if not first:
        raise CLIError("empty passphrase")
    if confirm and getpass.getpass(f"repeat {prompt}: ") != first:
        raise CLIError("the passphrases do not match")
    return first


def open_vault(
    vault: str | None,
    password_file: Path | None,
    *,
    strict: bool = False,
    no_lock: bool = False,
) -> Vault:
    """Open the vault the options name.  The passphrase's key is derived first, while only
    typer, the storage layer and Argon2 are loaded: its memory (32 MiB by default) then adds
    to a small base instead of to cryptography, numpy and the engines (issue 7).

    Opened leniently: an index object, recovery point or tombstone that fails to verify is
    skipped with a warning on stderr (``check`` reports it, ``check --repair`` removes it),
    so one junk object does not stop every command.  Reading commands then go on without a
    lock when ``no_lock`` says so, or with a warning when the vault cannot take one
    (read-only or full storage)."""
    from strongroom.storage import open_backend
    from strongroom.vault.keys import SlotOpener

    location = vault_location(vault)
    backend = open_backend(location)
    try:
        opener = SlotOpener(backend, read_passphrase(password_file))
        opener.prepare()
        from strongroom.vault import Vault

        opened = Vault.open(backend, opener, strict=strict, warn=warn, lazy_index=True)
    except BaseException:
        backend.close()
        raise
    _freeze_loaded()
    opened.skip_read_locks = no_lock
    opened.on_no_lock = warn
    _opened.add(opened)
    return opened


_opened: weakref.WeakSet[Vault] = weakref.WeakSet()
_froze: list[bool] = []  # one entry once opening a vault has frozen what it loaded


def _freeze_loaded() -> None:
    """Move what opening the first vault loaded (cryptography, the vault's modules) out of
    the collector's sight, as ``run`` did for the CLI (:mod:`strongroom.cli.entry`).  Once
    per process: a long-running command (the agent) would otherwise freeze each job's
    objects too."""
    if not _froze:
        _froze.append(True)
        gc.freeze()


def close_opened() -> None:
    """Close the vaults this command opened, so their storage connections go when it ends,
    not when the collector gets to them (a reference cycle can keep an idle TLS connection
    open, and a server being stopped waits for it)."""
    for opened in list(_opened):
        opened.close()
        _opened.discard(opened)


def committed_points() -> int:
    """Recovery points this process committed into the vaults it opened (for the message
    of an interrupted backup)."""
    return sum(v.points_committed for v in _opened)
