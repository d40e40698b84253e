"""Global options, before or after the command: ``strongroom -r DIR --json points`` is
``strongroom points -r DIR --json``.

typer has no options every command inherits, so one mechanism does both halves:

- :func:`split_leading` and :func:`place` move the global options found before the command
  name to right after the command's path (``backup files``), where the command parses them
  as its own; anything else before the command is a usage error.
- :func:`install` adds ``--password-command``, ``--token-file`` and ``--profile`` to every
  command that takes ``--vault`` (``--vault``, ``--password-file`` and ``--json`` are
  declared by the commands).  They record into :data:`GIVEN` for
  :mod:`strongroom.cli.options`, which applies command line > environment > profile.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from strongroom.cli.profiles import Profile, load_profile
from strongroom.errors import StrongroomError
from strongroom.records import dataclass

VALUE_OPTIONS = (
    "--vault",
    "-r",
    "--password-file",
    "--password-command",
    "--token-file",
    "--profile",
)
FLAG_OPTIONS = ("--json",)
TOKEN_ENV = "STRONGROOM_TOKEN"  # = strongroom.storage.http (not imported: start-up cost)
TOKEN_FILE_ENV = "STRONGROOM_TOKEN_FILE"


class GlobalUsageError(StrongroomError):
    """A global option before the command is unknown or lacks its value (exit 2)."""


@dataclass
class Given:
    """What the command line said for the options no command declares itself."""

    password_command: str | None = None
    token_file: Path | None = None
    profile_name: str | None = None
    _profile: Profile | None = None

    def profile(self) -> Profile:
        """The profile in effect (loaded once per command)."""
        if self._profile is None:
            self._profile = load_profile(self.profile_name)
        return self._profile

    def reset(self) -> None:
        vars(self).update(vars(Given()))


GIVEN = Given()


@contextmanager
def session() -> Iterator[None]:
    """One command's global state; the token variables it sets are put back afterwards (the
    CLI also runs in-process, in the tests)."""
    GIVEN.reset()
    saved = {k: os.environ.get(k) for k in (TOKEN_ENV, TOKEN_FILE_ENV)}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        GIVEN.reset()


def split_leading(argv: list[str]) -> tuple[list[str], list[str]]:
    """The global options before the command, and the rest of ``argv``."""
    leading: list[str] = []
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] not in ("--help", "--"):
        token = argv[i]
        name, eq, _ = token.partition("=")
        if token in FLAG_OPTIONS or (name in VALUE_OPTIONS and eq):
            leading.append(token)
            i += 1
        elif token in VALUE_OPTIONS:
            if i + 1 >= len(argv):
                raise GlobalUsageError(f"option {token} requires an argument")
            leading += argv[i : i + 2]
            i += 2
        else:
            known = ", ".join([*VALUE_OPTIONS, *FLAG_OPTIONS])
            raise GlobalUsageError(
                f"no such option before the command: {token} (global options: {known})"
            )
    return leading, argv[i:]


def place(leading: list[str], rest: list[str], command: Any) -> list[str]:
    """``rest`` with the ``leading`` global options right after the command's path."""
    depth = _command_depth(rest, command)
    return [*rest[:depth], *leading, *rest[depth:]]


def _command_depth(args: list[str], command: Any) -> int:
    """How many of ``args`` name the command (``backup files``: 2)."""
    depth = 0
    while depth < len(args):
        sub = getattr(command, "commands", {}).get(args[depth])
        if sub is None:
            break
        command, depth = sub, depth + 1
    return depth


# --- the options commands do not declare ------------------------------------------------


def _password_command(value: str | None) -> str | None:
    if value is not None:
        if not value.strip():
            raise typer.BadParameter("an empty command")
        GIVEN.password_command = value
    return value


def _token_file(value: Path | None) -> Path | None:
    if value is not None:  # storage/http.py reads these; the command line wins
        os.environ.pop(TOKEN_ENV, None)
        os.environ[TOKEN_FILE_ENV] = str(value)
        GIVEN.token_file = value
    return value


def _profile(value: str | None) -> str | None:
    if value is not None:
        GIVEN.profile_name = value
    return value


def _template(
    password_command: Annotated[
        str | None,
        typer.Option(
            "--password-command",
            help="Run this command and take the first line it prints as the passphrase.",
            callback=_password_command,
            expose_value=False,
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="File holding the vault server's token (else STRONGROOM_TOKEN[_FILE]).",
            callback=_token_file,
            expose_value=False,
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="Profile in ~/.config/strongroom/config.toml (else STRONGROOM_PROFILE, default).",
            callback=_profile,
            expose_value=False,
        ),
    ] = None,
) -> None:
    """The options :func:`install` adds (declared here so typer builds them)."""


def _extra_params() -> list[Any]:
    app = typer.Typer(add_completion=False)
    app.command()(_template)
    return list(typer.main.get_command(app).params)


def install(command: Any) -> int:
    """Add the global options missing from every command (and subcommand) that takes
    ``--vault``; how many commands got them."""
    extra: list[Any] | None = None
    done = 0
    stack = [command]
    while stack:
        cmd = stack.pop()
        stack.extend(getattr(cmd, "commands", {}).values())
        have = {opt for p in getattr(cmd, "params", ()) for opt in getattr(p, "opts", ())}
        if "--vault" not in have:
            continue
        extra = _extra_params() if extra is None else extra
        cmd.params.extend(p for p in extra if not set(p.opts) & have)
        done += 1
    return done
