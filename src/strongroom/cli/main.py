"""The ``strongroom`` command: wires the command groups and maps errors to exit codes.

Exit codes: 0 success; 1 error; 2 bad usage; 3 partial success (the backup finished but some
files could not be read); 130 interrupted.

Start-up cost is paid on every command, so loading the CLI loads little: the command modules
import the engines, numpy and rich inside the commands that use them (after the vault is
open, so the key derivation's memory adds to a small base), and parameters are converted
without pydantic (:mod:`strongroom.cli.coercion`).  ``tests/cli/test_startup.py`` holds
this.
"""

from __future__ import annotations

import gc
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from types import FrameType

import typer

from strongroom import __version__
from strongroom.cli import (
    agent_cmds,
    coercion,
    completion,
    control_cmds,
    copying,
    globalopts,
    server_cmds,
    user_cmds,
    vault_cmds,
)
from strongroom.cli import files as files_cmds
from strongroom.cli import image as image_cmds
from strongroom.cli import instant as instant_cmds
from strongroom.cli import keys as keys_cmds
from strongroom.cli import maintenance as maintenance_cmds
from strongroom.cli import mount as mount_cmds
from strongroom.cli import stream as stream_cmds
from strongroom.cli import vm as vm_cmds
from strongroom.cli.options import JsonOpt, committed_points
from strongroom.cli.output import error
from strongroom.errors import StrongroomError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="strongroom",
    help="Backup for virtual machines and files: deduplicated, compressed, encrypted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
backup_app = typer.Typer(no_args_is_help=True, help="Back up files, a disk image or VMs.")
restore_app = typer.Typer(no_args_is_help=True, help="Restore files, a disk or VMs.")
vault_cmds.register(app)
maintenance_cmds.register(app)
files_cmds.register(app, backup_app, restore_app)
image_cmds.register(app, backup_app, restore_app)
vm_cmds.register(app)
stream_cmds.register(app, backup_app)
mount_cmds.register(app)
copying.register(app)
completion.register(app)
server_cmds.register(app)
instant_cmds.register(app)
agent_cmds.register(app)
control_cmds.register(app)
user_cmds.register(app)
app.add_typer(backup_app, name="backup")
app.add_typer(restore_app, name="restore")
app.add_typer(
    keys_cmds.app, name="key", help="Manage the passphrases (key slots) that open the vault."
)


@app.command()
def version(
    as_json: JsonOpt = False,
) -> None:
    """Print strongroom's version."""
    if as_json:
        import json
        import platform

        doc = {"version": __version__, "python": platform.python_version()}
        typer.echo(json.dumps(doc))
    else:
        typer.echo(f"strongroom {__version__}")


def _app_for(argv: list[str]) -> typer.Typer:
    """The app with only the group or command that ``argv`` names.  typer inspects every
    command's signature when it builds its click commands (about 40 ms for all of them, on
    every run), so a run builds the one it needs; anything else (``--help``, a name that is
    not a command) gets the whole app and its usual messages."""
    name = argv[0] if argv else ""
    groups = [g for g in app.registered_groups if g.name == name]
    commands = [
        c
        for c in app.registered_commands
        if (c.name or typer.main.get_command_name(getattr(c.callback, "__name__", ""))) == name
    ]
    if not groups and not commands:
        return app
    only = typer.Typer(name=app.info.name, add_completion=False, pretty_exceptions_enable=False)
    only.registered_groups, only.registered_commands = groups, commands
    # a callback keeps it a group even with a single command, so the command's name still
    # comes first on the command line
    only.callback()(_root)
    return only


def _root() -> None:
    """Backup for virtual machines and files: deduplicated, compressed, encrypted."""


class _Signals:
    """The signal that interrupted the command, if any (typer turns the KeyboardInterrupt it
    raises into a bare exit code 130, so the handler records it for the message)."""

    received: str | None = None

    @classmethod
    def handle(cls, signum: int, frame: FrameType | None) -> None:
        cls.received = signal.Signals(signum).name
        raise KeyboardInterrupt

    @classmethod
    @contextmanager
    def installed(cls) -> Iterator[None]:
        """SIGINT and SIGTERM both stop the command the same way (cleanup runs, exit 130)."""
        cls.received = None
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {sig: signal.signal(sig, cls.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


def _interrupted(argv: list[str], how: str | None) -> int:
    """Say what an interrupt left behind: one line, exit 130."""
    by = f" by {how}" if how else ""
    if argv[:1] != ["backup"]:
        error(f"interrupted{by}")
    elif committed_points():
        error(f"interrupted{by} after the recovery point was committed")
    else:
        error(
            f"interrupted{by}: nothing was committed (packs already written are unreferenced "
            "and safe to leave: prune removes them)"
        )
    return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (never exits the process itself)."""
    if argv is None:
        argv = sys.argv[1:]
    with globalopts.session():
        return _main(argv)


def _main(argv: list[str]) -> int:
    try:  # global options before the command go after it (cli/globalopts.py)
        leading, argv = globalopts.split_leading(argv)
    except globalopts.GlobalUsageError as exc:
        error(str(exc))
        return EXIT_USAGE
    completion.prepare()
    command = typer.main.get_command(_app_for(argv))
    argv = globalopts.place(leading, argv, command)
    globalopts.install(command)
    coercion.install(command)
    with _Signals.installed():
        try:
            run_typer = partial(
                command.main,
                args=argv,
                standalone_mode=False,
                complete_var=completion.COMPLETE_VAR,  # set: typer answers and exits
            )
            rv = _run_command(run_typer)
        except KeyboardInterrupt:
            return _interrupted(argv, _Signals.received)
        if _Signals.received is not None:
            return _interrupted(argv, _Signals.received)
    return rv


def _run_command(run_typer: Callable[[], object]) -> int:
    try:
        rv = run_typer()
    except typer.Abort:
        error("aborted")
        return EXIT_INTERRUPTED
    except typer.TyperException as exc:  # usage errors: typer's (vendored) click exceptions
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        code = getattr(exc, "exit_code", EXIT_USAGE)
        return code if isinstance(code, int) else EXIT_USAGE
    except StrongroomError as exc:
        error(str(exc))
        return EXIT_ERROR
    return rv if isinstance(rv, int) else EXIT_OK


# Backups run a walker thread, readers and pack uploaders that hand the GIL over at every
# system call; a thread waiting for it gets it back sooner with a 1 ms switch interval than
# with the default 5 ms (a first backup of 20,000 small files: 1.7 s -> 1.5 s).
_SWITCH_INTERVAL_S = 0.001
# The engines allocate a few containers per file (nodes, tuples, results) and free nearly all
# of them by reference counting; a cycle collection every 700 allocations (the default)
# stopped every thread for 0.07-0.09 s in all in a first backup of 20,000 files, every
# 10,000 for 0.01 s.
_GC_THRESHOLD = (10_000, 10, 10)


def run() -> None:
    """Console-script entry point."""
    sys.setswitchinterval(_SWITCH_INTERVAL_S)
    gc.set_threshold(*_GC_THRESHOLD)
    sys.exit(main())


if __name__ == "__main__":
    run()
