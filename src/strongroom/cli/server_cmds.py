"""``strongroom server`` (init, run, vault add/list), ``strongroom token``, ``approve``,
``approvals`` and ``audit``.

The server side (FastAPI, uvicorn, SQLite) loads only inside ``server`` commands; ``token`` and
``audit`` talk to a running server with the standard library's HTTP client.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from strongroom.cli.options import JsonOpt
from strongroom.cli.output import console, print_json

if TYPE_CHECKING:
    from strongroom.server.client import AdminClient

server_app = typer.Typer(no_args_is_help=True, help="Run a vault server (strongroom server).")
vault_app = typer.Typer(no_args_is_help=True, help="Vaults the server serves.")
token_app = typer.Typer(no_args_is_help=True, help="Tokens of a vault server (admin token).")
approvals_app = typer.Typer(
    no_args_is_help=True, help="Settings changes waiting for a second admin (admin token)."
)

DataOpt = Annotated[
    Path,
    typer.Option(
        "--data", envvar="STRONGROOM_SERVER_DATA", help="The server's data folder (catalog)."
    ),
]
ServerOpt = Annotated[
    str | None,
    typer.Option("--server", envvar="STRONGROOM_SERVER", help="The server: https://HOST:PORT."),
]
TokenFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        help="A file holding the token (default: STRONGROOM_TOKEN or STRONGROOM_TOKEN_FILE).",
    ),
]
MiB = 1024 * 1024


def register(app: typer.Typer) -> None:
    server_app.add_typer(vault_app, name="vault")
    app.add_typer(server_app, name="server")
    app.add_typer(token_app, name="token")
    app.add_typer(approvals_app, name="approvals")
    app.command("approve")(approve_cmd)
    app.command("audit")(audit_cmd)


@server_app.command("init")
def server_init(
    data: DataOpt,
    catalog: Annotated[
        str | None,
        typer.Option(
            "--catalog",
            help="Keep the catalog in PostgreSQL (postgresql://USER@HOST/DB) instead of a "
            "SQLite file; servers given the same URL share it.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create the server's catalog and print the first admin token (shown only once)."""
    from strongroom.server.run import init_catalog

    token = init_catalog(data, catalog)
    if as_json:
        print_json({"token": token})
    elif token is None:
        typer.echo(f"joined the server catalog in PostgreSQL; its config is in {data}")
    else:
        typer.echo(f"created the server catalog in {data}")
        typer.echo(f"first admin token (shown only once, keep it safe):\n{token}")


@server_app.command("run")
def server_run(
    data: DataOpt,
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT; plain HTTP only on loopback.")
    ] = "127.0.0.1:8443",
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="PEM certificate.")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key.")] = None,
    max_upload_mib: Annotated[
        int, typer.Option("--max-upload", help="Largest object upload in MiB.", min=1)
    ] = 256,
    body_timeout: Annotated[
        float,
        typer.Option("--body-timeout", help="Seconds an upload may stall before it is cut."),
    ] = 30.0,
    upload_budget_mib: Annotated[
        int,
        typer.Option(
            "--upload-budget", help="MiB of uploads held in memory at once; more wait.", min=1
        ),
    ] = 256,
) -> None:
    """Serve the catalog's vaults over HTTPS until interrupted."""
    from strongroom.server.run import serve

    serve(
        data,
        listen,
        tls_cert=tls_cert,
        tls_key=tls_key,
        max_upload=max_upload_mib * MiB,
        body_idle_timeout=body_timeout,
        upload_budget=upload_budget_mib * MiB,
    )


@vault_app.command("add")
def vault_add(
    data: DataOpt,
    name: str,
    location: Annotated[
        str | None, typer.Argument(help="Backend location (default: under the data folder).")
    ] = None,
    object_lock_days: Annotated[
        int | None,
        typer.Option(
            "--object-lock-days",
            min=1,
            help="s3:// only: write packs, index objects and points under S3 Object Lock "
            "retention for this many days (the bucket needs Object Lock enabled).",
        ),
    ] = None,
    object_lock_mode: Annotated[
        str, typer.Option("--object-lock-mode", help="compliance or governance.")
    ] = "compliance",
    as_json: JsonOpt = False,
) -> None:
    """Serve a vault under NAME, stored at LOCATION (a path, azure:// or s3://)."""
    from strongroom.server.run import add_vault
    from strongroom.storage.objectlock import make_lock

    lock = None if object_lock_days is None else make_lock(object_lock_days, object_lock_mode)
    where = add_vault(data, name, location, lock)
    if as_json:
        print_json({"name": name, "location": where})
    else:
        typer.echo(f"vault {name} at {where}")


@vault_app.command("list")
def vault_list(data: DataOpt, as_json: JsonOpt = False) -> None:
    """The vaults the server serves."""
    from strongroom.server.run import list_vaults

    rows = list_vaults(data)
    if as_json:
        print_json([{"name": n, "location": loc} for n, loc in rows])
    else:
        for n, loc in rows:
            typer.echo(f"{n}\t{loc}")


def _client(server: str | None, token_file: Path | None) -> AdminClient:
    from strongroom.server.client import AdminClient

    return AdminClient(server, token_file)


@token_app.command("create")
def token_create(
    role: Annotated[
        str, typer.Option("--role", help="backup, restore, maintenance, admin or enrol.")
    ],
    source: Annotated[
        list[str] | None, typer.Option("--source", help="Source the token is for (repeat).")
    ] = None,
    expires: Annotated[
        float | None, typer.Option("--expires", help="Days until the token expires.", min=0)
    ] = None,
    label: Annotated[str, typer.Option("--label", help="A note shown in listings.")] = "",
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a token; the token itself is shown only once."""
    client = _client(server, token_file)
    try:
        doc = client.create_token(role, list(source or []), expires, label)
    finally:
        client.close()
    if as_json:
        print_json(doc)
    else:
        typer.echo(f"token {doc['id']} ({doc['role']}), shown only once:\n{doc['token']}")


def _when(t: Any) -> str:
    if not isinstance(t, int | float):
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


@token_app.command("list")
def token_list(
    server: ServerOpt = None, token_file: TokenFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Every token (never their secrets)."""
    client = _client(server, token_file)
    try:
        rows = client.tokens()
    finally:
        client.close()
    if as_json:
        print_json(rows)
        return
    for r in rows:
        state = "revoked" if r["revoked"] else f"expires {_when(r['expires'])}"
        sources = ",".join(r["sources"]) or "-"
        console().print(f"{r['id']}  {r['role']:<11} {sources}  {state}  {r['label']}")


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID")],
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
) -> None:
    """Revoke a token at once."""
    client = _client(server, token_file)
    try:
        client.revoke(token_id)
    finally:
        client.close()
    typer.echo(f"revoked token {token_id}")


def audit_cmd(
    limit: Annotated[int, typer.Option("--limit", help="The newest N entries.", min=1)] = 100,
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The server's audit log: who did what, when, from where, with what outcome."""
    client = _client(server, token_file)
    try:
        rows = client.audit(limit)
    finally:
        client.close()
    if as_json:
        print_json(rows)
        return
    for r in rows:
        who = f"{r['token'] or '-'}({r['role'] or '-'})"
        what = f"{r['action']} {r['vault'] or ''}/{r['target'] or ''}"
        typer.echo(f"{_when(r['time'])} {r['client']} {who} {what} -> {r['status']} {r['detail']}")


@approvals_app.command("list")
def approvals_list(
    server: ServerOpt = None, token_file: TokenFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Every approval request: pending, approved, rejected or stale."""
    client = _client(server, token_file)
    try:
        rows = client.approvals()
    finally:
        client.close()
    if as_json:
        print_json(rows)
        return
    for r in rows:
        typer.echo(
            f"{r['id']}  {r['state']:<8} {r['vault']}: {r['summary']}  asked by "
            f"{r['requested_by']} at {_when(r['created'])}"
        )


@approvals_app.command("reject")
def approvals_reject(
    approval_id: Annotated[str, typer.Argument(metavar="ID")],
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
) -> None:
    """Reject (or, as its requester, withdraw) a pending request."""
    client = _client(server, token_file)
    try:
        client.reject(approval_id)
    finally:
        client.close()
    typer.echo(f"rejected {approval_id}")


def approve_cmd(
    approval_id: Annotated[str, typer.Argument(metavar="ID")],
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve another admin's settings change that lowers a protection; it applies at once."""
    client = _client(server, token_file)
    try:
        done = client.approve(approval_id)
    finally:
        client.close()
    if as_json:
        print_json(done)
    else:
        typer.echo(f"approved {approval_id}: {done['vault']}: {done['summary']}")
