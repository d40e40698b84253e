"""Commands for file-level backup, browse (ls, find, diff) and restore.

The files engine (and through it numpy) and rich's progress bar are imported inside the
commands, after the vault is open: loading the CLI stays cheap and the key derivation runs
while little is in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from strongroom.cli.globalopts import GIVEN
from strongroom.cli.options import (
    CLIError,
    JsonOpt,
    NoLockOpt,
    PasswordFileOpt,
    VaultOpt,
    open_vault,
)
from strongroom.cli.output import console, escape, human_bytes, is_tty, print_json, say, warn
from strongroom.errors import StrongroomError

if TYPE_CHECKING:
    from strongroom.cli.hooks import HookRun
    from strongroom.files import BackupOptions, WarmWorkers
    from strongroom.vault import RecoveryPoint, Vault

EXIT_PARTIAL = 3
CONFLICT_POLICIES = ("overwrite", "skip", "keep-both")  # = strongroom.files.CONFLICT_POLICIES
SourceOpt = Annotated[
    str | None, typer.Option("--source", help="Source name (default: this host's name).")
]
LuksOpt = Annotated[
    Path | None,
    typer.Option("--luks-passphrase-file", help="Opens LUKS volumes inside an image point."),
]
_DIFF_MARKS = {"added": "+", "removed": "-", "modified": "M", "metadata": "U", "type": "T"}


def register(app: typer.Typer, backup: typer.Typer, restore: typer.Typer) -> None:
    """Add this group's commands to the top-level, ``backup`` and ``restore`` apps."""
    backup.command("files")(backup_files_cmd)
    restore.command("files")(restore_files_cmd)
    app.command("ls")(ls_cmd)
    app.command("find")(find_cmd)
    app.command("diff")(diff_cmd)


@contextmanager
def _progress(enabled: bool, verb: str) -> Iterator[Callable[[int, int, str], None] | None]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn(f"{verb} [bold]{{task.fields[files]}}[/] files"),
        TextColumn("{task.fields[size]}"),
        TextColumn("{task.fields[rate]}"),
        BarColumn(bar_width=20),
        TimeElapsedColumn(),
        TextColumn("{task.fields[current]}"),
    )
    with Progress(*columns, console=console(), transient=True) as bar:
        task = bar.add_task(verb, total=None, files=0, size="", rate="", current="")
        started = bar.get_time()

        def update(files: int, nbytes: int, current: str) -> None:
            elapsed = max(bar.get_time() - started, 1e-3)
            bar.update(
                task,
                files=files,
                size=human_bytes(nbytes),
                rate=f"{human_bytes(nbytes / elapsed)}/s",
                current=escape(current[-60:]),
            )

        yield update


def _no_empty(values: Iterable[str], hint: str, names: str) -> None:
    """An empty argument is a usage mistake (say, an unset shell variable), not "here"."""
    if any(not v for v in values):
        raise typer.BadParameter(f"an empty value names nothing ({names})", param_hint=hint)


def _check_patterns(patterns: list[str], hint: str) -> None:
    """Before the vault is opened (a usage error asks no passphrase); the patterns module is
    small, and without patterns not even loaded before the key is derived."""
    if not patterns:
        return
    from strongroom.files.patterns import PatternSet

    try:
        PatternSet(patterns)
    except StrongroomError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from None


def _exclude_patterns(exclude: list[str], exclude_file: Path | None) -> list[str]:
    _no_empty(exclude, "'--exclude'", "give a pattern")
    _check_patterns(exclude, "'--exclude'")
    if exclude_file is None:
        return list(exclude)
    from strongroom.files.patterns import read_pattern_file

    try:
        return [*exclude, *read_pattern_file(exclude_file)]
    except OSError as exc:
        raise CLIError(f"cannot read {exclude_file}: {exc.strerror}") from None
    except StrongroomError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--exclude-file'") from None


def _resolve(v: Vault, spec: str, source: str | None) -> RecoveryPoint:
    if spec == "latest" and source is None:
        import socket

        source = socket.gethostname()
    return v.resolve_point(spec, source=source, kind="files")


BackupProcessesOpt = Annotated[
    int | None,
    typer.Option(
        "--processes",
        min=0,
        max=8,
        help="Worker processes for big trees (default: one per core but one, as the backup "
        "walks too; 0: none).",
    ),
]
RestoreProcessesOpt = Annotated[
    int | None,
    typer.Option(
        "--processes",
        min=0,
        max=8,
        help="Worker processes for big trees (default: one per core; 0: none).",
    ),
]


def backup_files_cmd(
    paths: Annotated[list[str], typer.Argument(help="Files and folders to back up.")],
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", "-e", help="Glob pattern to leave out.")
    ] = None,
    exclude_file: Annotated[
        Path | None, typer.Option("--exclude-file", help="File of patterns, one a line.")
    ] = None,
    one_file_system: Annotated[
        bool, typer.Option("--one-file-system", "-x", help="Do not cross file systems.")
    ] = False,
    exclude_nodump: Annotated[
        bool,
        typer.Option("--exclude-nodump", help="Leave out files and folders flagged no-dump."),
    ] = False,
    source: SourceOpt = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag for the point.")] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Read every file (ignore the files cache).")
    ] = False,
    processes: BackupProcessesOpt = None,
    pre_hook: Annotated[
        str | None, typer.Option("--pre-hook", help="Shell command run first; failing stops.")
    ] = None,
    post_hook: Annotated[
        str | None,
        typer.Option("--post-hook", help="Shell command run after, also when the backup failed."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Back up files and folders; prints the new recovery point's id.

    Hooks: see strongroom.cli.hooks (STRONGROOM_STATUS and STRONGROOM_POINT for the post-hook).
    """
    _no_empty(paths, "'PATHS...'", "give . for the current folder")
    if source is not None:
        _no_empty([source], "'--source'", "leave it out for this host's name")
    patterns = _exclude_patterns(exclude or [], exclude_file)
    patterns += GIVEN.profile().excludes
    from strongroom.files import BackupOptions, WarmWorkers

    opts = BackupOptions(
        paths=paths,
        source=source,
        tags=list(tag or []),
        excludes=patterns,
        one_file_system=one_file_system,
        exclude_nodump=exclude_nodump,
        use_cache=not no_cache,
        processes=processes,
    )
    with WarmWorkers(opts) as warm:
        # a pre-hook may change what the paths hold: no early look at them then
        v = open_vault(vault, password_file)
        if not pre_hook:
            warm.begin(v.vault_id)
        from strongroom.cli.hooks import around

        with around(pre_hook, post_hook, opts.source_name()) as hook_run:
            _backup_files(v, opts, warm, as_json, hook_run)


def _backup_files(
    v: Vault, opts: BackupOptions, warm: WarmWorkers, as_json: bool, hook_run: HookRun
) -> None:
    from strongroom import malloctune
    from strongroom.files import backup_files

    malloctune.apply()  # a backup's peak memory, at no cost in CPU (the module says why)
    with _progress(is_tty() and not as_json, "backed up") as progress:
        summary = backup_files(v, opts, progress, warm)
    hook_run.point = summary.point_id
    if as_json:
        print_json(summary.to_dict())
    else:
        for path, reason in summary.errors:
            warn(f"{path}: {reason}")
        for message in summary.warnings:
            warn(message)
        for path in summary.inconsistent:
            warn(f"{path}: changed while it was read (recorded as inconsistent)")
        for path, reason in summary.skipped:
            say(f"note: {path}: {reason}")
        s = summary
        say(  # plain: a backup run from cron then never loads rich (issue 19)
            f"files: {s.files_new} new, {s.files_changed} changed, {s.files_unchanged} unchanged;"
            f" read {human_bytes(s.bytes_read)}, added {human_bytes(s.bytes_added)}"
            f" in {s.duration:.1f}s"
        )
        typer.echo(summary.point_id)
    if summary.errors:
        raise typer.Exit(EXIT_PARTIAL)


def restore_files_cmd(
    point: Annotated[str, typer.Argument(help="Point id, unique prefix or 'latest'.")],
    target: Annotated[Path, typer.Option("--target", "-t", help="Folder to restore into.")],
    paths: Annotated[
        list[str] | None, typer.Argument(help="Paths or globs in the point (default: all).")
    ] = None,
    on_conflict: Annotated[
        str, typer.Option("--on-conflict", help="overwrite, skip or keep-both.")
    ] = "overwrite",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be done.")
    ] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Re-read and check each file.")] = False,
    processes: RestoreProcessesOpt = None,
    luks_file: LuksOpt = None,
    source: SourceOpt = None,
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    no_lock: NoLockOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Restore a files point, or some of it, into a folder (or files out of an image point:
    /DISK/VOLUME/PATH)."""
    if on_conflict not in CONFLICT_POLICIES:
        raise CLIError(f"--on-conflict must be one of {', '.join(CONFLICT_POLICIES)}")
    _no_empty(paths or [], "'[PATHS]...'", "leave the paths out to restore all of the point")
    _check_patterns(paths or [], "'[PATHS]...'")
    v = open_vault(vault, password_file, no_lock=no_lock)
    from strongroom.cli import guest
    from strongroom.files import RestoreOptions, restore_files

    opts = RestoreOptions(
        target, list(paths or []), on_conflict, dry_run, verify, processes=processes
    )
    if (image := guest.image_point(v, point, source)) is not None:
        p = image
        summary = guest.restore(v, p, opts, guest.luks_passphrase(luks_file))
    else:
        p = _resolve(v, point, source)
        with _progress(is_tty() and not as_json and not dry_run, "restored") as progress:
            summary = restore_files(v, p, opts, progress)
    if as_json:
        print_json(summary.to_dict())
    else:
        for action, path in summary.actions:
            say(f"{action:>10} {path}")
        for path, reason in [*summary.warnings, *summary.errors]:
            warn(f"{path}: {reason}")
        verb = "would restore" if dry_run else "restored"
        n = len(summary.actions) if dry_run else summary.files + summary.links
        say(
            f"{verb} {n} {'entries' if dry_run else 'files'} from {p.short_id} to {summary.target}"
            + (f", {len(summary.skipped)} skipped" if summary.skipped else "")
        )
    if summary.errors:
        raise typer.Exit(EXIT_PARTIAL)


def ls_cmd(
    point: Annotated[str, typer.Argument(help="Point id, unique prefix or 'latest'.")],
    path: Annotated[str, typer.Argument(help="Path inside the point.")] = "/",
    long: Annotated[bool, typer.Option("--long", "-l", help="Mode, owner, size, time.")] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-R", help="Everything below.")] = False,
    luks_file: LuksOpt = None,
    source: SourceOpt = None,
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    no_lock: NoLockOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """List what a files point holds at PATH (or an image point: /DISK/VOLUME/PATH)."""
    _no_empty([path], "'[PATH]'", "give / for the top")
    v = open_vault(vault, password_file, no_lock=no_lock)
    from strongroom.cli import guest

    if (image := guest.image_point(v, point, source)) is not None:  # inside an image point
        return guest.ls(v, image, path, long, as_json, guest.luks_passphrase(luks_file))
    from strongroom.files import list_point, long_line, node_doc, shown_path

    p = _resolve(v, point, source)
    with v.read_lock():
        found = list(list_point(v, p, path, recursive))
    if as_json:
        print_json([node_doc(path_, node) for path_, node in found])
        return
    if not long:
        for path_, _ in found:
            typer.echo(shown_path(path_))
        return
    rows = [long_line(path_, node) for path_, node in found]
    owner_w = max((len(r[1]) for r in rows), default=0)
    size_w = max((len(r[2]) for r in rows), default=0)
    for mode, owner, size, when, shown in rows:
        typer.echo(f"{mode} {owner:<{owner_w}} {size:>{size_w}} {when} {shown}")


def find_cmd(
    pattern: Annotated[str, typer.Argument(help="Glob pattern, e.g. '*.conf' or '/etc/hosts'.")],
    source: Annotated[str | None, typer.Option("--source", help="Only this source.")] = None,
    point: Annotated[
        list[str] | None,
        typer.Option("--point", help="Search inside this VM or disk point (repeatable)."),
    ] = None,
    luks_file: LuksOpt = None,
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    no_lock: NoLockOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Find which files points hold paths matching PATTERN; with --point, search every
    volume of those VM or disk points (paths /DISK/VOLUME/PATH)."""
    _no_empty([pattern], "'PATTERN'", "give '*' for every path")
    _check_patterns([pattern], "'PATTERN'")
    v = open_vault(vault, password_file, no_lock=no_lock)
    if point:
        _find_in_images(v, point, pattern, source, as_json, luks_file)
        return
    from strongroom.files import find_in_points, node_doc, shown_path

    with v.read_lock():
        points = [p for p in v.points() if source is None or p.manifest.source == source]
        hits = list(find_in_points(v, points, pattern))
    if as_json:
        print_json(
            [
                {"point": p.point_id, "time": p.manifest.time, **node_doc(path, node)}
                for p, path, node in hits
            ]
        )
        return
    for p, path, node in hits:
        when = p.manifest.time[:19].replace("T", " ")
        say(f"{p.short_id}  {when}  {node.size:>12}  {shown_path(path)}")
    if not hits:
        say("no match")


def _find_in_images(
    v: Vault, specs: list[str], pattern: str, source: str | None, as_json: bool, luks: Path | None
) -> None:
    from strongroom.cli import guest

    points = []
    for spec in specs:
        p = guest.image_point(v, spec, source)
        if p is None:
            raise CLIError(
                f"{spec}: not a VM or disk point (find searches files points without --point)"
            )
        points.append(p)
    code = guest.find(v, points, pattern, as_json, guest.luks_passphrase(luks))
    if code:
        raise typer.Exit(code)


def diff_cmd(
    point: Annotated[str, typer.Argument(help="Point id, unique prefix or 'latest'.")],
    point2: Annotated[
        str | None, typer.Argument(help="Second point (default: POINT's parent).")
    ] = None,
    live: Annotated[
        str | None, typer.Option("--live", help="Compare POINT's copy of PATH with PATH now.")
    ] = None,
    luks_file: LuksOpt = None,
    source: SourceOpt = None,
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    no_lock: NoLockOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """What changed: between two points, or between a point and the live files.  For VM and
    disk points: diff POINT1 POINT2, or diff POINT /DISK/VOLUME/PATH --live DIR."""
    if live is not None:
        _no_empty([live], "'--live'", "give . for the current folder")
    v = open_vault(vault, password_file, no_lock=no_lock)
    from strongroom.cli import guest

    if (image := guest.image_point(v, point, source)) is not None:
        code = _diff_images(v, image, point2, live, source, as_json, luks_file)
        if code:
            raise typer.Exit(code)
        return
    if live is not None and point2 is not None:
        raise CLIError("give either a second point or --live, not both")
    from strongroom.files import diff_live, diff_points, shown_path

    p = _resolve(v, point, source)
    with v.read_lock():
        if live is not None:
            changes = diff_live(v, p, live)
        else:
            if point2 is not None:
                old, new = p, _resolve(v, point2, source)
            elif p.manifest.parent:
                old, new = v.resolve_point(p.manifest.parent), p
            else:
                raise CLIError(f"point {p.short_id} has no parent: give a second point or --live")
            changes = diff_points(v, old, new)
    if as_json:
        print_json([c.to_dict() for c in changes])
        return
    for c in changes:
        extra = f"  ({', '.join(c.fields)})" if c.fields else ""
        say(f"{_DIFF_MARKS[c.change]} {shown_path(c.path)}{extra}")
    say(f"{len(changes)} change(s)")


def _diff_images(
    v: Vault,
    p: RecoveryPoint,
    second: str | None,
    live: str | None,
    source: str | None,
    as_json: bool,
    luks_file: Path | None,
) -> int:
    from strongroom.cli import guest

    luks = guest.luks_passphrase(luks_file)
    if live is not None:
        return guest.diff_live(v, p, second, live, as_json, luks)
    if second is not None:
        old, new = p, guest.image_point(v, second, source) or v.resolve_point(second)
    elif p.manifest.parent:
        old, new = v.resolve_point(p.manifest.parent), p
    else:
        raise CLIError(f"point {p.short_id} has no parent: give a second point or --live")
    return guest.diff(v, old, new, as_json, luks)
