"""Vault-wide commands: init, points, stats, check (and check --repair).

The vault's modules are imported inside the commands, where they are used
(see ``strongroom.cli.main``).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Annotated

import typer

from strongroom.cli.options import (
    COMPRESSION_LEVEL_MAX,
    COMPRESSION_LEVEL_MIN,
    JsonOpt,
    NoLockOpt,
    PasswordFileOpt,
    VaultOpt,
    open_vault,
    read_passphrase,
    vault_location,
)
from strongroom.cli.output import Table, console, human_bytes, is_tty, print_json, say, warn

if TYPE_CHECKING:
    from strongroom.vault import CheckReport, RecoveryPoint, Vault
    from strongroom.vault.repair import RepairReport
    from strongroom.vault.tombstones import Tombstone

MiB = 1024 * 1024
# init's KDF defaults: the same as strongroom.vault.keys.KDFParams() (a test checks), written
# out so that loading the CLI does not load the crypto libraries.
KDF_MEMORY_MIB = 32
KDF_TIME_COST = 4
# The bounds strongroom.vault.keys puts on a slot's cost (1 MiB..4 GiB here, in whole MiB;
# 1..100 passes), so a bad value is a usage error before anything is written.
KDF_MEMORY_MAX_MIB = 4096
KDF_TIME_MAX = 100


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(points)
    app.command()(stats)
    app.command()(check)


def init(
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    pack_size_mib: Annotated[
        int, typer.Option("--pack-size", help="Target pack size in MiB.", min=1)
    ] = 16,
    compression_level: Annotated[
        int | None,
        typer.Option(
            "--compression-level",
            help="zstd level of what is written, 1-19 (default 2); 'settings' changes it.",
            min=COMPRESSION_LEVEL_MIN,
            max=COMPRESSION_LEVEL_MAX,
        ),
    ] = None,
    kdf_memory_mib: Annotated[
        int,
        typer.Option("--kdf-memory", help="Argon2id memory in MiB.", min=1, max=KDF_MEMORY_MAX_MIB),
    ] = KDF_MEMORY_MIB,
    kdf_time: Annotated[
        int, typer.Option("--kdf-time", help="Argon2id passes.", min=1, max=KDF_TIME_MAX)
    ] = KDF_TIME_COST,
    as_json: JsonOpt = False,
) -> None:
    """Create a new vault."""
    from strongroom.storage import open_backend
    from strongroom.vault import KDFParams, Vault, VaultSettings

    location = vault_location(vault)
    passphrase = read_passphrase(password_file, confirm=True, prompt="new vault passphrase")
    backend = open_backend(location)
    try:
        kdf = KDFParams(time_cost=kdf_time, memory_kib=kdf_memory_mib * 1024)
        settings = VaultSettings(pack_size=pack_size_mib * MiB)
        if compression_level is not None:
            settings = replace(settings, compression_level=compression_level)
        created = Vault.init(backend, passphrase, settings=settings, kdf=kdf)
    finally:
        backend.close()
    if as_json:
        print_json({"vault": location, "id": created.vault_id.hex(), "key": created.slot_id})
    else:
        console().print(f"created vault {created.vault_id.hex()[:12]} at {location}")
        console().print("keep the passphrase safe: without it the data cannot be read")


def _point_doc(p: RecoveryPoint, stone: Tombstone | None = None) -> dict[str, object]:
    m = p.manifest
    doc: dict[str, object] = {
        "id": p.point_id,
        "kind": m.kind,
        "source": m.source,
        "time": m.time,
        "parent": m.parent,
        "consistency": m.consistency,
        "tags": m.tags,
        "host": m.host,
        "summary": m.summary,
    }
    if stone is not None:
        doc["deleted"] = {
            "at": stone.deleted_at,
            "purge_after": stone.purge_after,
            "by": f"{stone.user}@{stone.host}",
            "reason": stone.reason,
        }
    return doc


def points(
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    no_lock: NoLockOpt = False,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind: vm, disk or files.")] = None,
    deleted: Annotated[
        bool, typer.Option("--deleted", help="List soft-deleted points (recoverable) instead.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List recovery points (with --deleted: the forgotten ones prune has not removed yet)."""
    v = open_vault(vault, password_file, no_lock=no_lock)
    with v.read_lock():
        stones = v.tombstones() if deleted else {}
        found = [
            p
            for p in v.points(include_deleted=deleted)
            if (source is None or p.manifest.source == source)
            and (kind is None or p.manifest.kind == kind)
            and (not deleted or p.point_id in stones)
        ]
    if as_json:
        print_json([_point_doc(p, stones.get(p.point_id)) for p in found])
        return
    table = _deleted_table(found, stones) if deleted else _points_table(found)
    table.print()
    say(f"{len(found)} {'soft-deleted ' if deleted else ''}recovery point(s)")


def _points_table(found: list[RecoveryPoint]) -> Table:
    table = Table("id", "time", "kind", "source", "consistency", "size", "tags")
    for p in found:
        m = p.manifest
        size = m.summary.get("logical_bytes")
        table.add_row(
            p.short_id,
            m.time[:19].replace("T", " "),
            m.kind,
            m.source,
            m.consistency,
            human_bytes(size) if isinstance(size, int) else "",
            ",".join(m.tags),
        )
    return table


def _deleted_table(found: list[RecoveryPoint], stones: dict[str, Tombstone]) -> Table:
    table = Table("id", "time", "kind", "source", "deleted", "purged after", "reason")
    for p in found:
        m, stone = p.manifest, stones[p.point_id]
        table.add_row(
            p.short_id,
            _short_time(m.time),
            m.kind,
            m.source,
            _short_time(stone.deleted_at),
            _short_time(stone.purge_after),
            stone.reason,
        )
    return table


def _short_time(iso: str) -> str:
    return iso[:16].replace("T", " ")


def stats(
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    no_lock: NoLockOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Sizes, counts, dedup and compression ratios."""
    v = open_vault(vault, password_file, no_lock=no_lock)
    from strongroom.vault import vault_stats

    with v.read_lock():
        s = vault_stats(v)
    doc = {
        "points": s.points,
        "points_by_kind": s.points_by_kind,
        "packs": s.packs,
        "stored_bytes": s.pack_bytes,
        "index_objects": s.index_objects,
        "chunks": s.chunks,
        "unique_raw_bytes": s.chunk_raw_bytes,
        "unique_stored_bytes": s.chunk_stored_bytes,
        "original_bytes": s.logical_bytes,
        "dedup_ratio": round(s.dedup_ratio, 3),
        "compression_ratio": round(s.compression_ratio, 3),
        "extra_copies": s.extra_copies,
        "extra_copy_stored_bytes": s.extra_copy_bytes,
    }
    if as_json:
        print_json(doc)
        return
    table = Table(show_header=False)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(s.points_by_kind.items()))
    table.add_row("recovery points", f"{s.points}" + (f" ({kinds})" if kinds else ""))
    table.add_row("original size", human_bytes(s.logical_bytes))
    table.add_row("unique data", f"{human_bytes(s.chunk_raw_bytes)} in {s.chunks} chunks")
    table.add_row("stored size", f"{human_bytes(s.pack_bytes)} in {s.packs} packs")
    if s.extra_copies:  # written by versions before session 25
        copies = f"{s.extra_copies} chunks, {human_bytes(s.extra_copy_bytes)}"
        table.add_row("stored twice", copies + " (prune --repack-threshold 95% drops them)")
    table.add_row("dedup ratio", f"{s.dedup_ratio:.2f}x")
    table.add_row("compression ratio", f"{s.compression_ratio:.2f}x")
    table.print()


def check(
    vault: VaultOpt = None,
    password_file: PasswordFileOpt = None,
    no_lock: NoLockOpt = False,
    read_data: Annotated[
        bool, typer.Option("--read-data", help="Decrypt and verify every chunk.")
    ] = False,
    subset: Annotated[
        str | None,
        typer.Option("--read-data-subset", help="Read only this share of packs, e.g. 10%."),
    ] = None,
    do_repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="First rebuild the index from the packs and drop what cannot be repaired.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Verify the vault's structure, and with --read-data its data."""
    share = _parse_percent(subset) if subset else None
    if do_repair and no_lock:
        raise typer.BadParameter("--repair writes to the vault: it cannot run with --no-lock")
    v = open_vault(vault, password_file, no_lock=no_lock)
    from strongroom.vault.repair import repair

    fixed = repair(v) if do_repair else None
    if fixed is not None and not as_json:
        _print_repair(fixed)
    with v.read_lock():
        report = _run_check(v, read_data, share, show_progress=is_tty() and not as_json)
    if as_json:
        doc = _report_doc(report)
        if fixed is not None:
            doc["repair"] = asdict(fixed)
        print_json(doc)
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_repair(r: RepairReport) -> None:
    for action in r.actions:
        console().print(f"repair: {action}", soft_wrap=True)
    console().print(
        f"repair: read {r.packs_read} packs; new index lists {r.packs_indexed} packs "
        f"({len(r.packs_newly_indexed)} newly indexed), replaced {r.index_objects_replaced} "
        f"index object(s); salvaged {r.chunks_salvaged} chunk(s), {r.chunks_lost} lost"
    )
    for point_id, lost in r.damaged_points.items():
        console().print(
            f"[red]recovery point {point_id[:12]} lost {lost} chunk(s)[/]: restore what remains, "
            "or forget it"
        )


def _parse_percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a percentage such as 10%") from None
    if not 0 < value <= 100:
        raise typer.BadParameter("the subset must be between 0% and 100%")
    return value / 100


def _run_check(
    v: Vault, read_data: bool, share: float | None, *, show_progress: bool
) -> CheckReport:
    from strongroom.vault import check_vault

    if not show_progress:
        return check_vault(v, read_data=read_data, subset=share)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("reading packs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console(), transient=True) as bar:
        task = bar.add_task("read", total=None)

        def progress(_: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return check_vault(v, read_data=read_data, subset=share, progress=progress)


def _report_doc(r: CheckReport) -> dict[str, object]:
    return {
        "ok": r.ok,
        "problems": [
            {"severity": p.severity, "object": p.name, "message": p.message} for p in r.problems
        ],
        "packs_read": r.packs_checked,
        "chunks_read": r.chunks_checked,
        "bytes_read": r.bytes_read,
        "points_checked": r.points_checked,
        "damaged_chunks": sorted(c.hex() for c in r.damaged_chunks),
        "affected_points": r.affected_points,
    }


def _print_report(r: CheckReport) -> None:
    for p in r.problems:
        if p.severity == "warning":
            warn(f"{p.name}: {p.message}")
        else:
            text = p.message if p.message.startswith(p.name) else f"{p.name}: {p.message}"
            console().print(f"[red]error[/]: {text}", soft_wrap=True)
    if r.packs_checked:
        console().print(
            f"read {r.packs_checked} packs, {r.chunks_checked} chunks, {human_bytes(r.bytes_read)}"
        )
    for point_id, chunks in r.affected_points.items():
        console().print(
            f"[red]recovery point {point_id[:12]} is damaged[/]: {len(chunks)} chunk(s) unreadable"
        )
    status = "no errors were found" if r.ok else f"{len(r.errors)} error(s) found"
    console().print(f"checked {r.points_checked} recovery points: {status}")
