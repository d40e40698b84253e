"""``strongroom vault-schedule``: when the server verifies a vault (admin token).

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
    no_args_is_help=True, help="When the server verifies each vault (admin)."
)


def _when(t: object) -> str:
    from strongroom.cli.control_cmds import _when as when

    return when(t)


@schedule_app.command("set")
def schedule_set(
    vault: Annotated[str, typer.Argument(help="The vault, as named on the server.")],
    verify: Annotated[
        str, typer.Option("--verify", help="Calendar expression of the verify runs (UTC).")
    ],
    verify_days: Annotated[
        float,
        typer.Option("--verify-days", min=0.001, max=3650, help="Every object within N days."),
    ] = 30.0,
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify VAULT's packs, index objects and points on a schedule (server-side, no key)."""
    from strongroom.cli.control_cmds import _call

    body = {"vault": vault, "verify": verify, "verify_days": verify_days}
    found = _call(server, token_file, "set_vault_schedule", body)
    if as_json:
        print_json(found)
        return
    typer.echo(
        f"{vault}: verify {verify!r}, every object within {verify_days:g} day(s);"
        f" next run {_when(found['next_verify'])}"
    )


@schedule_app.command("list")
def schedule_list(
    server: ServerOpt = None, token_file: TokenFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Every vault's verify schedule."""
    from strongroom.cli.control_cmds import _call

    rows = _call(server, token_file, "vault_schedules")
    if as_json:
        print_json(rows)
        return
    for s in rows:
        typer.echo(
            f"{s['vault']}: verify {s['verify']!r} within {s['verify_days']:g} day(s),"
            f" next {_when(s['next_verify'])}"
        )
