"""``strongroom vault-schedule``: when the server verifies a vault, and when the vault's
designated maintenance agent prunes it (admin token).

A vault's schedule, not a policy's field: verification reads the vault's packs, which every
item and policy writing to it share through deduplication, so it is one schedule per vault.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from strongroom.cli.options import JsonOpt
from strongroom.cli.output import print_json
from strongroom.cli.server_cmds import ServerOpt, TokenFileOpt

if TYPE_CHECKING:
    pass

schedule_app = typer.Typer(
    no_args_is_help=True, help="When each vault is verified and pruned (admin)."
)


def _when(t: object) -> str:
    from strongroom.cli.control_cmds import _when as when

    return when(t)


@schedule_app.command("set")
def schedule_set(
    vault: Annotated[str, typer.Argument(help="The vault, as named on the server.")],
    verify: Annotated[
        str | None,
        typer.Option("--verify", help="Calendar expression of the verify runs (UTC)."),
    ] = None,
    verify_days: Annotated[
        float,
        typer.Option("--verify-days", min=0.001, max=3650, help="Every object within N days."),
    ] = 30.0,
    prune: Annotated[
        str | None,
        typer.Option("--prune", help="Calendar expression of the prune runs (UTC)."),
    ] = None,
    prune_machine: Annotated[
        str | None,
        typer.Option(
            "--prune-machine", help="The machine whose agent prunes (needs a maintenance token)."
        ),
    ] = None,
    prune_grace_hours: Annotated[
        float,
        typer.Option(
            "--prune-grace-hours", min=0.0, help="Prune never collects data younger than this."
        ),
    ] = 1.0,
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify VAULT on a schedule (server-side, no key) and/or prune it on a schedule (by the
    agent of --prune-machine, with its maintenance token)."""
    from strongroom.cli.control_cmds import _call

    if verify is None and prune is None:
        raise typer.BadParameter("give --verify EXPR, --prune EXPR or both")
    if (prune is None) != (prune_machine is None):
        raise typer.BadParameter("--prune and --prune-machine go together")
    body: dict[str, object] = {"vault": vault, "verify": verify, "verify_days": verify_days}
    body.update(prune=prune, prune_machine=prune_machine, prune_grace_hours=prune_grace_hours)
    found = _call(server, token_file, "set_vault_schedule", body)
    if as_json:
        print_json(found)
        return
    if verify is not None:
        typer.echo(
            f"{vault}: verify {verify!r}, every object within {verify_days:g} day(s);"
            f" next run {_when(found['next_verify'])}"
        )
    if prune is not None:
        typer.echo(
            f"{vault}: prune {prune!r} by {prune_machine}'s agent;"
            f" next run {_when(found['next_prune'])}"
        )


@schedule_app.command("list")
def schedule_list(
    server: ServerOpt = None, token_file: TokenFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Every vault's verify and prune schedules."""
    from strongroom.cli.control_cmds import _call

    rows = _call(server, token_file, "vault_schedules")
    if as_json:
        print_json(rows)
        return
    for s in rows:
        if "verify" in s:
            typer.echo(
                f"{s['vault']}: verify {s['verify']!r} within {s['verify_days']:g} day(s),"
                f" next {_when(s['next_verify'])}"
            )
        if "prune" in s:
            typer.echo(
                f"{s['vault']}: prune {s['prune']!r} by {s['machine']},"
                f" next {_when(s['next_prune'])}"
            )
