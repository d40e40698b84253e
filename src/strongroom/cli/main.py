"""The ``strongroom`` command: wires the command groups and maps errors to exit codes.

Exit codes: 0 success; 1 error; 2 bad usage; 3 partial success (the backup finished but some
files could not be read); 130 interrupted.

Start-up cost is paid on every command, so loading the CLI loads little: a run imports only
the command modules of the command it runs (``_HOMES``), those import the engines, numpy and
rich inside the commands that use them (after the vault is open, so the key derivation's
memory adds to a small base), and parameters are converted without pydantic
(:mod:`strongroom.cli.coercion`).  ``tests/cli/test_startup.py`` holds this.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache, partial
from types import FrameType
from typing import Any, NamedTuple

import typer
from typer.models import CommandInfo, TyperInfo

from strongroom import __version__, collector
from strongroom.cli import coercion, completion, globalopts
from strongroom.cli.options import JsonOpt, close_opened, committed_points
from strongroom.cli.output import error
from strongroom.errors import StrongroomError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130

# The command modules in the order their commands are listed by --help.
_MODULES = (
    "vault_cmds",
    "maintenance",
    "files",
    "image",
    "vm",
    "stream",
    "mount",
    "copying",
    "completion",
    "server_cmds",
    "instant",
    "agent_cmds",
    "control_cmds",
    "user_cmds",
    "keys",
)
# Which modules register each top-level command or group: a run imports only those (all of
# them cost about 60 ms and 4 MiB).  A name missing here still works, through the whole app;
# tests/cli/test_startup.py checks the table against the app.
_HOMES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("init", "points", "stats", "check"), ("vault_cmds",)),
    **dict.fromkeys(("forget", "undelete", "prune", "settings"), ("maintenance",)),
    **dict.fromkeys(("ls", "find", "diff"), ("files",)),
    "backup": ("files", "image", "stream"),
    "restore": ("files", "image"),
    "vm": ("vm",),
    "cat": ("stream",),
    "mount": ("mount",),
    "copy": ("copying",),
    "completion": ("completion",),
    **dict.fromkeys(("server", "token", "approvals", "approve", "audit"), ("server_cmds",)),
    **dict.fromkeys(("serve", "instant"), ("instant",)),
    "agent": ("agent_cmds",),
    **dict.fromkeys(
        ("protect", "items", "policy", "jobs", "alert", "backup-now", "machines", "vault-schedule"),
        ("control_cmds",),
    ),
    "user": ("user_cmds",),
    "key": ("keys",),
    "version": (),
}
# Within the backup and restore groups, the module of each command: ``backup files`` builds
# the group with that one command (the others' modules and signatures cost 5-10 ms).
_SUB_HOMES: dict[str, dict[str, tuple[str, ...]]] = {
    "backup": {"files": ("files",), "vm": ("image",), "disk": ("image",), "stdin": ("stream",)},
    "restore": {"files": ("files",), "vm": ("image",), "disk": ("image",)},
}
_HELP = "Backup for virtual machines and files: deduplicated, compressed, encrypted."


class _Parts(NamedTuple):
    """What one command module registers: at the top level, under backup, under restore."""

    commands: list[CommandInfo]
    groups: list[TyperInfo]
    backup: list[CommandInfo]
    restore: list[CommandInfo]


@cache
def _parts(name: str) -> _Parts:
    """Import a command module and collect what it registers (once per process: some modules
    add subgroups to their own module-level apps when they register)."""
    module = importlib.import_module(f"strongroom.cli.{name}")
    top, backup, restore = typer.Typer(), typer.Typer(), typer.Typer()
    if name == "keys":
        help_ = "Manage the passphrases (key slots) that open the vault."
        top.add_typer(module.app, name="key", help=help_)
    elif name in ("files", "image"):
        module.register(top, backup, restore)
    elif name == "stream":
        module.register(top, backup)
    else:
        module.register(top)
    return _Parts(
        top.registered_commands,
        top.registered_groups,
        backup.registered_commands,
        restore.registered_commands,
    )


def _assemble(modules: Iterable[str], **info: Any) -> typer.Typer:
    """An app with the commands of ``modules`` (and ``version``), in --help's order."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, **info)
    backup_app = typer.Typer(no_args_is_help=True, help="Back up files, a disk image or VMs.")
    restore_app = typer.Typer(no_args_is_help=True, help="Restore files, a disk or VMs.")
    groups: list[TyperInfo] = []
    for name in modules:
        parts = _parts(name)
        app.registered_commands.extend(parts.commands)
        backup_app.registered_commands.extend(parts.backup)
        restore_app.registered_commands.extend(parts.restore)
        groups.extend(parts.groups)
    app.command()(version)
    app.registered_groups.extend(g for g in groups if g.name != "key")
    for sub, group in ((backup_app, "backup"), (restore_app, "restore")):
        if sub.registered_commands:
            app.add_typer(sub, name=group)
    app.registered_groups.extend(g for g in groups if g.name == "key")
    return app


@cache
def _full_app() -> typer.Typer:
    return _assemble(_MODULES, name="strongroom", help=_HELP, no_args_is_help=True)


def __getattr__(name: str) -> typer.Typer:
    """``app``: the whole command tree, built on first use (tests, documentation)."""
    if name == "app":
        return _full_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def _command_name(info: CommandInfo) -> str:
    return info.name or typer.main.get_command_name(getattr(info.callback, "__name__", ""))


def _app_for(argv: list[str]) -> typer.Typer:
    """The app with only the group or command that ``argv`` names, built from the modules
    that register it.  Importing every command module and building every click command
    (typer inspects each signature) costs about 0.1 s on every run, so a run builds the one
    it needs; anything else (``--help``, a name that is not a command) gets the whole app
    and its usual messages."""
    name = argv[0] if argv else ""
    if name not in _HOMES:
        return _full_app()
    sub = _SUB_HOMES.get(name, {}).get(argv[1] if len(argv) > 1 else "")
    some = _assemble(_HOMES[name] if sub is None else sub)
    groups = [g for g in some.registered_groups if g.name == name]
    if sub is not None:  # that one command of the group (``backup --help`` lists them all)
        for group in groups:
            if group.typer_instance is not None:  # a fresh app's list: ours to trim
                kept = group.typer_instance.registered_commands
                kept[:] = [c for c in kept if _command_name(c) == argv[1]]
    commands = [c for c in some.registered_commands if _command_name(c) == name]
    if not groups and not commands:
        return _full_app()
    only = typer.Typer(name="strongroom", add_completion=False, pretty_exceptions_enable=False)
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
        try:
            return _main(argv)
        finally:
            close_opened()


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
                prog_name="strongroom",  # also under ``python -m`` and in tests
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
        return _usage_error(exc)
    except StrongroomError as exc:
        error(str(exc))
        return EXIT_ERROR
    return rv if isinstance(rv, int) else EXIT_OK


def _usage_error(exc: typer.TyperException) -> int:
    """A bad command line as one line on stderr (click's own shows the usage, a hint and a
    blank line first), with the command's ``--help`` to look at.  A group called without its
    command still shows its help: that text is the message."""
    code = getattr(exc, "exit_code", EXIT_USAGE)
    code = code if isinstance(code, int) else EXIT_USAGE
    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    if "\n" in message.strip():
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        return code
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None)
    hint = f"; see '{path} --help'" if path else ""
    if message[:1].isupper() and message[1:2].islower():  # "No such option" -> "no such ..."
        message = message[0].lower() + message[1:]
    error(message.rstrip(".") + hint)
    return code


# Backups run a walker thread, readers and pack uploaders that hand the GIL over at every
# system call; a thread waiting for it gets it back sooner with a 1 ms switch interval than
# with the default 5 ms (a first backup of 20,000 small files: 1.7 s -> 1.5 s).
_SWITCH_INTERVAL_S = 0.001


def run() -> None:
    """The command, once the CLI has loaded (:mod:`strongroom.cli.entry`: with the collector
    off until here)."""
    sys.setswitchinterval(_SWITCH_INTERVAL_S)
    collector.start_work()
    sys.exit(main())


if __name__ == "__main__":
    run()
