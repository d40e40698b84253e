"""The control plane's commands (admin token): ``protect``, ``items``, ``policy``, ``jobs``,
``backup-now``, ``alert`` and ``machines``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from strongroom.cli.options import JsonOpt
from strongroom.cli.output import print_json
from strongroom.cli.server_cmds import ServerOpt, TokenFileOpt

if TYPE_CHECKING:
    from pathlib import Path

    from strongroom.server.control.client import ControlClient

protect_app = typer.Typer(no_args_is_help=True, help="Protect files, a VM or a disk (admin).")
items_app = typer.Typer(no_args_is_help=True, help="Protected items and their health.")
policy_app = typer.Typer(no_args_is_help=True, help="Backup policies: schedule and retention.")
jobs_app = typer.Typer(no_args_is_help=True, help="Backup and retention jobs.")
alert_app = typer.Typer(no_args_is_help=True, help="Where alerts go: webhooks, e-mail.")
alert_add_app = typer.Typer(no_args_is_help=True, help="Add an alert target.")

NameOpt = Annotated[str, typer.Option("--name", help="The item's name (its points' source).")]
PolicyOpt = Annotated[str, typer.Option("--policy", help="The policy it follows.")]


def register(app: typer.Typer) -> None:
    app.add_typer(protect_app, name="protect")
    app.add_typer(items_app, name="items")
    app.add_typer(policy_app, name="policy")
    app.add_typer(jobs_app, name="jobs")
    alert_app.add_typer(alert_add_app, name="add")
    app.add_typer(alert_app, name="alert")
    app.command("backup-now")(backup_now)
    app.command("machines")(machines)
    from strongroom.cli.upkeep_cmds import schedule_app

    app.add_typer(schedule_app, name="vault-schedule")


def _call(server: str | None, token_file: Path | None, what: str, *args: Any) -> Any:
    from strongroom.server.control.client import ControlClient

    client: ControlClient = ControlClient(server, token_file)
    try:
        return getattr(client, what)(*args)
    finally:
        client.close()


def _when(t: Any) -> str:
    if not isinstance(t, int | float):
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


def _protect(
    kind: str,
    machine: str,
    targets: list[str],
    name: str,
    policy: str,
    excludes: list[str],
    server: str | None,
    token_file: Path | None,
    as_json: bool,
) -> None:
    body = {
        "name": name,
        "kind": kind,
        "machine": machine,
        "targets": targets,
        "excludes": excludes,
        "policy": policy,
    }
    doc = _call(server, token_file, "protect", body)
    if as_json:
        print_json(doc)
    else:
        typer.echo(f"protecting {kind} item {name} on {machine} with policy {policy}")


@protect_app.command("files")
def protect_files(
    machine: str,
    paths: Annotated[list[str], typer.Argument(help="Paths on the machine.")],
    name: NameOpt,
    policy: PolicyOpt,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", "-e", help="Glob pattern to leave out.")
    ] = None,
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Back up PATHS of MACHINE on the policy's schedule."""
    _protect(
        "files", machine, paths, name, policy, list(exclude or []), server, token_file, as_json
    )


@protect_app.command("vm")
def protect_vm(
    machine: str,
    domain: str,
    name: NameOpt,
    policy: PolicyOpt,
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Back up the libvirt DOMAIN on the host MACHINE (its points' source: the domain)."""
    _protect("vm", machine, [domain], name, policy, [], server, token_file, as_json)


@protect_app.command("disk")
def protect_disk(
    machine: str,
    image: str,
    name: NameOpt,
    policy: PolicyOpt,
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Back up the disk IMAGE (a file or block device) on MACHINE."""
    _protect("disk", machine, [image], name, policy, [], server, token_file, as_json)


@items_app.command("list")
def items_list(
    server: ServerOpt = None, token_file: TokenFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Every protected item: health (ok, warning, failed, overdue), last success, next run."""
    rows = _call(server, token_file, "items")
    if as_json:
        print_json(rows)
        return
    typer.echo(
        f"{'ITEM':<20} {'KIND':<5} {'MACHINE':<16} {'HEALTH':<8} {'LAST SUCCESS':<16} NEXT RUN"
    )
    for r in rows:
        typer.echo(
            f"{r['name']:<20} {r['kind']:<5} {r['machine']:<16} {r['health']:<8} "
            f"{_when(r['last_success']):<16} {_when(r['next_run'])}"
        )


def _keep(name: str) -> Any:
    return typer.Option(f"--keep-{name}", min=0, help=f"Keep {name} N.")


@policy_app.command("create")
def policy_create(
    name: str,
    vault: Annotated[str, typer.Option("--vault", help="The vault's name on the server.")],
    schedule: Annotated[
        str, typer.Option("--schedule", help="Calendar expression, e.g. 'mon..fri 02:00'.")
    ],
    window: Annotated[
        str | None, typer.Option("--window", help="HH:MM-HH:MM (UTC): start jobs only then.")
    ] = None,
    retries: Annotated[int, typer.Option("--retries", min=0, max=100)] = 0,
    retry_delay: Annotated[
        float, typer.Option("--retry-delay", min=0, help="Minutes between attempts.")
    ] = 10.0,
    consistency: Annotated[
        str, typer.Option("--consistency", help="auto, app or crash (VM backups).")
    ] = "auto",
    grace: Annotated[
        float, typer.Option("--grace", min=0, help="Minutes after a run before overdue.")
    ] = 60.0,
    keep_last: Annotated[int, _keep("last")] = 0,
    keep_hourly: Annotated[int, _keep("hourly")] = 0,
    keep_daily: Annotated[int, _keep("daily")] = 0,
    keep_weekly: Annotated[int, _keep("weekly")] = 0,
    keep_monthly: Annotated[int, _keep("monthly")] = 0,
    keep_yearly: Annotated[int, _keep("yearly")] = 0,
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a policy: where (vault), when (schedule, window), retries and retention."""
    body = {
        "name": name,
        "vault": vault,
        "schedule": schedule,
        "window": window,
        "retries": retries,
        "retry_delay": retry_delay,
        "consistency": consistency,
        "grace": grace,
        "keep_last": keep_last,
        "keep_hourly": keep_hourly,
        "keep_daily": keep_daily,
        "keep_weekly": keep_weekly,
        "keep_monthly": keep_monthly,
        "keep_yearly": keep_yearly,
    }
    doc = _call(server, token_file, "create_policy", body)
    if as_json:
        print_json(doc)
    else:
        typer.echo(f"policy {name}: vault {vault}, schedule {schedule!r}")


@policy_app.command("list")
def policy_list(
    server: ServerOpt = None, token_file: TokenFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Every policy."""
    rows = _call(server, token_file, "policies")
    if as_json:
        print_json(rows)
        return
    for p in rows:
        keep = ", ".join(f"{k[5:]} {p[k]}" for k in p if k.startswith("keep_") and p[k])
        typer.echo(f"{p['name']}: vault {p['vault']}, {p['schedule']!r}, keep {keep or '-'}")


@jobs_app.command("list")
def jobs_list(
    item: Annotated[str | None, typer.Option("--item", help="Only this item's jobs.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Jobs, newest first."""
    rows = _call(server, token_file, "jobs", item, limit)
    if as_json:
        print_json(rows)
        return
    for j in rows:
        extra = f"{j['percent']:.0f}%" if j["state"] == "running" and j["percent"] else ""
        typer.echo(
            f"{j['id']:>6} {j['kind']:<9} {j['item']:<20} {j['state']:<9} {extra:<4} "
            f"{_when(j['started'])}  {j['reason'] or ''}"
        )


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[int, typer.Argument(metavar="ID")],
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A job: its times, numbers, point, failure reason and log."""
    j = _call(server, token_file, "job", job_id)
    if as_json:
        print_json(j)
        return
    for key in (
        "id",
        "item",
        "kind",
        "state",
        "attempt",
        "scheduled",
        "started",
        "finished",
        "bytes_read",
        "bytes_added",
        "files",
        "percent",
        "eta",
        "point",
        "reason",
    ):
        value = _when(j[key]) if key in ("scheduled", "started", "finished") else j[key]
        typer.echo(f"{key + ':':<13}{'-' if value is None else value}")
    for line in j["log"]:
        typer.echo(f"  {_when(line['time'])} {line['line']}")


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[int, typer.Argument(metavar="ID")],
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
) -> None:
    """Cancel a queued job, or stop a running one (nothing it wrote is committed)."""
    doc = _call(server, token_file, "cancel", job_id)
    typer.echo(f"job {job_id}: {doc['state']}")


def backup_now(
    item: str,
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue a backup of ITEM now (its agent picks it up at once)."""
    doc = _call(server, token_file, "backup_now", item)
    if as_json:
        print_json(doc)
    else:
        typer.echo(f"queued job {doc['job']} for {item}")


def machines(
    server: ServerOpt = None, token_file: TokenFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Registered machines and when their agents were last seen."""
    rows = _call(server, token_file, "machines")
    if as_json:
        print_json(rows)
        return
    for m in rows:
        typer.echo(f"{m['name']:<20} last seen {_when(m['last_seen'])} from {m['address'] or '-'}")


@alert_add_app.command("webhook")
def alert_add_webhook(url: str, server: ServerOpt = None, token_file: TokenFileOpt = None) -> None:
    """POST alerts as JSON to URL."""
    doc = _call(server, token_file, "add_alert", "webhook", url, None)
    typer.echo(f"alert target {doc['id']}: webhook {url}")


@alert_add_app.command("email")
def alert_add_email(
    address: str,
    smtp: Annotated[str, typer.Option("--smtp", help="The SMTP relay, HOST:PORT.")],
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
) -> None:
    """Mail alerts to ADDRESS through the SMTP relay."""
    doc = _call(server, token_file, "add_alert", "email", address, smtp)
    typer.echo(f"alert target {doc['id']}: e-mail {address} via {smtp}")


@alert_app.command("list")
def alert_list(
    server: ServerOpt = None, token_file: TokenFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Alert targets and the conditions raised now."""
    doc = _call(server, token_file, "alerts")
    if as_json:
        print_json(doc)
        return
    for t in doc["targets"]:
        typer.echo(f"{t['id']:>3} {t['kind']:<8} {t['address']}")
    for item, conditions in doc["raised"].items():
        typer.echo(f"raised: {item}: {', '.join(conditions)}")
