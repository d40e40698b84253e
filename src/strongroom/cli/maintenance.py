"""Vault maintenance: forget (retention), undelete, prune, settings.

The vault's maintenance modules and rich's tables are imported inside the commands, where
they are used (see ``strongroom.cli.main``).
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from strongroom.cli.options import (
    COMPRESSION_LEVEL_MAX,
    COMPRESSION_LEVEL_MIN,
    CLIError,
    JsonOpt,
    PasswordFileOpt,
    VaultOpt,
    open_vault,
)
from strongroom.cli.output import Table as PlainTable
from strongroom.cli.output import console, human_bytes, print_json

if TYPE_CHECKING:
    from strongroom.vault import Vault
    from strongroom.vault.forget import GroupPlan
    from strongroom.vault.prune import PruneReport

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

Count = Annotated[int, typer.Option(min=0)]


def register(app: typer.Typer) -> None:
    app.command()(forget)
    app.command("undelete")(undelete_cmd)
    app.command("prune")(prune_cmd)
    app.command()(settings)


def parse_size(text: str) -> int:
    """``500M``, ``2G``, ``1.5GiB``, ``1024`` (binary units)."""
    m = _SIZE.match(text)
    if not m:
        raise typer.BadParameter(f"{text!r} is not a size such as 500M or 2G")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_percent(text: str) -> float:
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a percentage such as 80%") from None
    if not 0 <= value <= 100:
        raise typer.BadParameter("the percentage must be between 0% and 100%")
    return value / 100


# --- forget ----------------------------------------------------------------------------------


def forget(
    points: Annotated[
        list[str] | None, typer.Argument(help="Forget these points (ids or prefixes).")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Only points of this source.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind: vm, disk or files.")] = None,
    keep_last: Annotated[int, typer.Option("--keep-last", min=0, help="Newest N.")] = 0,
    keep_hourly: Annotated[int, typer.Option("--keep-hourly", min=0, help="N hours.")] = 0,
    keep_daily: Annotated[int, typer.Option("--keep-daily", min=0, help="N days.")] = 0,
    keep_weekly: Annotated[int, typer.Option("--keep-weekly", min=0, help="N weeks.")] = 0,
    keep_monthly: Annotated[int, typer.Option("--keep-monthly", min=0, help="N months.")] = 0,
    keep_yearly: Annotated[int, typer.Option("--keep-yearly", min=0, help="N years.")] = 0,
    keep_within: Annotated[
        str | None,
        typer.Option("--keep-within", help="Everything within e.g. 7d, 2w, 6m, 1y of the newest."),
    ] = None,
    reason: Annotated[str, typer.Option(help="Recorded with each forgotten point.")] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show the decisions.")] = False,
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Forget recovery points by retention policy (or by id): soft delete, explained."""
    from strongroom.storage.reserve import FORGET_KEEPS
    from strongroom.vault.forget import apply_forget, plan_forget, plan_forget_points
    from strongroom.vault.retention import KeepPolicy, parse_duration

    try:
        within = parse_duration(keep_within) if keep_within else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    policy = KeepPolicy(
        keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, within
    )
    if points and not policy.is_empty():
        raise CLIError("give either point ids or a --keep-* policy, not both")
    if not points and policy.is_empty():
        raise CLIError("no policy: give at least one --keep-* option (or point ids to forget)")
    v = open_vault(vault, password_file)
    with v.read_lock() if dry_run else v.lock(use_reserve=FORGET_KEEPS):
        if points:
            chosen = [v.resolve_point(spec, source=source, kind=kind) for spec in points]
            plans = plan_forget_points(v, chosen)
            why = reason or "forgotten by id"
        else:
            plans = plan_forget(v, policy, source=source, kind=kind)
            why = reason or f"retention policy: keep {policy.describe()}"
        forgotten = [] if dry_run else apply_forget(v, plans, why)
    _show_forget(v, plans, dry_run, len(forgotten), as_json)
    refused = sum(1 for plan in plans for d in plan.decisions if d.keep) if points else 0
    if refused:
        raise CLIError(f"{refused} of the named point(s) are immutable and were not forgotten")


def _show_forget(v: Vault, plans: list[GroupPlan], dry_run: bool, done: int, as_json: bool) -> None:
    days = v.config.settings.soft_delete_days
    if as_json:
        print_json(
            {
                "dry_run": dry_run,
                "soft_delete_days": days,
                "forgotten": done,
                "groups": [_group_doc(p) for p in plans],
            }
        )
        return
    from rich.table import Table

    for plan in plans:
        console().print(f"[bold]{plan.kind} {plan.source}[/]")
        table = Table("", "id", "time", "why", box=None)
        for d in plan.decisions:
            action = "keep" if d.keep else ("[red]forget[/]")
            why = ", ".join(d.reasons) if d.reasons else "no rule keeps it"
            when = d.point.manifest.time[:19].replace("T", " ")
            table.add_row(action, d.point.short_id, when, why)
        console().print(table)
    total = sum(len(p.to_forget) for p in plans)
    if dry_run:
        console().print(f"would forget {total} recovery point(s)")
    elif days:
        console().print(
            f"forgot {done} recovery point(s); they stay recoverable for {days} day(s) "
            "(`strongroom undelete POINT`), then prune removes them"
        )
    else:
        console().print(f"forgot {done} recovery point(s); soft delete is off: prune removes them")


def _group_doc(plan: GroupPlan) -> dict[str, object]:
    return {
        "kind": plan.kind,
        "source": plan.source,
        "points": [
            {
                "id": d.point.point_id,
                "time": d.point.manifest.time,
                "action": "keep" if d.keep else "forget",
                "reasons": d.reasons,
            }
            for d in plan.decisions
        ],
    }


# --- undelete --------------------------------------------------------------------------------


def undelete_cmd(
    point: Annotated[str, typer.Argument(help="Soft-deleted point id or prefix.")],
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Bring back a forgotten (soft-deleted) recovery point before prune removes it."""
    v = open_vault(vault, password_file)
    from strongroom.vault.forget import undelete

    with v.lock():
        restored = undelete(v, point)
    if as_json:
        print_json({"undeleted": restored.point_id})
    else:
        console().print(f"recovery point {restored.short_id} is back")


# --- prune -----------------------------------------------------------------------------------


def prune_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report the plan.")] = False,
    max_repack_size: Annotated[
        str | None, typer.Option("--max-repack-size", help="Read at most this much, e.g. 2G.")
    ] = None,
    repack_threshold: Annotated[
        str,
        typer.Option("--repack-threshold", help="Repack packs whose live share is under P%."),
    ] = "80%",
    grace_hours: Annotated[
        float,
        typer.Option(
            "--grace-hours",
            min=0.0,
            help="Never collect data younger than this (protects backups whose lock went "
            "stale; lowering it is unsafe while any backup may run).",
        ),
    ] = 1.0,
    lock_wait: Annotated[
        float | None,
        typer.Option("--lock-wait", min=0.0, help="Seconds to wait for running backups."),
    ] = None,
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove expired soft-deleted points and the data nothing needs any more."""
    threshold = parse_percent(repack_threshold)
    max_bytes = parse_size(max_repack_size) if max_repack_size else None
    v = open_vault(vault, password_file)
    from strongroom.vault.prune import PruneOptions, prune

    opts = PruneOptions(
        dry_run=dry_run,
        grace_seconds=grace_hours * 3600,
        repack_threshold=threshold,
        max_repack_bytes=max_bytes,
        lock_wait=lock_wait,
    )
    report = prune(v, opts)
    if as_json:
        print_json({**asdict(report), "bytes_freed": report.bytes_freed})
    else:
        _print_prune(report)


def _print_prune(r: PruneReport) -> None:
    verb = "would free" if r.dry_run else "freed"
    console().print(
        f"points: {r.points_live} live, {r.points_soft_deleted} soft-deleted (kept), "
        f"{len(r.points_removed)} removed after their soft-delete window"
    )
    console().print(
        f"chunks: {r.chunks_live} of {r.chunks} live ({r.trees_read} trees read); "
        f"packs: {r.packs} holding {human_bytes(r.pack_bytes)}"
    )
    from rich.table import Table

    table = Table("packs", "count", "size", box=None)
    table.add_row("deleted: no live chunk", str(r.packs_deleted), human_bytes(r.bytes_deleted))
    table.add_row("repacked: live share low", str(r.packs_repacked), human_bytes(r.bytes_repacked))
    table.add_row("orphans: in no index", str(r.orphan_packs), human_bytes(r.orphan_bytes))
    table.add_row("kept: younger than grace", str(r.packs_young + r.orphans_young), "")
    if r.packs_unknown:
        table.add_row("kept: in no readable index", str(r.packs_unknown), "")
    console().print(table)
    if r.index_entries_dropped:
        console().print(f"index entries of missing packs dropped: {r.index_entries_dropped}")
    if r.locked:
        console().print(
            f"kept {len(r.locked)} object(s) the storage's retention (object lock) still "
            "holds; a later prune deletes them"
        )
    console().print(f"{verb} {human_bytes(max(r.bytes_freed, 0))} in {r.duration:.1f}s")


# --- settings --------------------------------------------------------------------------------


def settings(
    soft_delete_days: Annotated[
        int | None,
        typer.Option("--soft-delete-days", min=0, help="Days a forgotten point stays recoverable."),
    ] = None,
    immutable_days: Annotated[
        int | None,
        typer.Option(
            "--immutable-days",
            min=0,
            help="Points younger than this cannot be forgotten; can be raised, never lowered "
            "(on a vault server: by its admins, with a second admin's approval).",
        ),
    ] = None,
    compression_level: Annotated[
        int | None,
        typer.Option(
            "--compression-level",
            min=COMPRESSION_LEVEL_MIN,
            max=COMPRESSION_LEVEL_MAX,
            help="zstd level of what is written from now on, 1-19 (stored data keeps its own).",
        ),
    ] = None,
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show or change the vault's soft-delete, immutability and compression settings."""
    v = open_vault(vault, password_file)
    if soft_delete_days is None and immutable_days is None and compression_level is None:
        s = v.refresh_config().settings
    else:
        from strongroom.vault.settings import change_settings

        s = change_settings(
            v,
            soft_delete_days=soft_delete_days,
            immutable_days=immutable_days,
            compression_level=compression_level,
        )
    doc = {
        "soft_delete_days": s.soft_delete_days,
        "immutable_days": s.immutable_days,
        "pack_size": s.pack_size,
        "compression_level": s.compression_level,
    }
    if as_json:
        print_json(doc)
        return
    table = PlainTable(show_header=False)
    for key, value in doc.items():
        table.add_row(key.replace("_", "-"), str(value))
    table.print()
