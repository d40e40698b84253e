"""The hidden background commands of instant recovery: ``instant run`` (the export) and
``instant supervise`` (restarts it; see ``image/instant/supervisor.py``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from strongroom.errors import StrongroomError

__all__ = ["register"]

NameArg = Annotated[str, typer.Argument(help="The instant recovery.")]


def register(app: typer.Typer) -> None:
    app.command("run", hidden=True)(instant_run_cmd)
    app.command("supervise", hidden=True)(instant_supervise_cmd)


def _ready_pipe() -> Callable[[str], None]:
    """Answer once through the inherited ready pipe (no-op without one)."""
    from strongroom.image.instant.supervisor import READY_ENV

    fd = int(os.environ.pop(READY_ENV, "-1"))

    def ready(message: str) -> None:
        nonlocal fd
        if fd >= 0:
            os.write(fd, message.encode())
            os.close(fd)
            fd = -1

    return ready


def _passphrase() -> str:
    """From the systemd credential when run as a unit (and a served vault's token from its
    own, when there is one), else the first line of stdin."""
    from strongroom.image.instant.systemd import CREDENTIAL, TOKEN_CREDENTIAL
    from strongroom.storage.http import TOKEN_ENV

    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds:
        token = Path(creds) / TOKEN_CREDENTIAL
        if token.is_file():
            os.environ[TOKEN_ENV] = token.read_text().strip()
        return (Path(creds) / CREDENTIAL).read_text().rstrip("\n")
    return sys.stdin.readline().rstrip("\n")


def instant_run_cmd(name: NameArg) -> None:
    """The background export (started by the supervisor or the systemd unit)."""
    from strongroom.cli.instant import open_with
    from strongroom.image.instant.state import InstantRecord
    from strongroom.image.instant.supervise import serve_record

    ready = _ready_pipe()
    try:
        passphrase = _passphrase()
        record = InstantRecord.load(name)
        serve_record(open_with(record.vault, passphrase), record, ready)
    except StrongroomError as exc:
        ready(str(exc))
        raise
    finally:
        ready("")


def instant_supervise_cmd(name: NameArg) -> None:
    """Detach, run the export and restart it when it dies (see docs/instant.md)."""
    from strongroom.image.instant.state import InstantRecord
    from strongroom.image.instant.supervisor import daemonize, supervise

    ready = _ready_pipe()
    try:
        passphrase = sys.stdin.readline().rstrip("\n")
        record = InstantRecord.load(name)
        daemonize(str(record.log_file))
    except StrongroomError as exc:
        ready(str(exc))
        raise
    try:
        code = supervise(record, passphrase, ready)
    finally:
        ready("")
    raise typer.Exit(code)
