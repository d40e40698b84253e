"""``strongroom agent register``, ``agent add-token`` and ``agent run``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strongroom.cli.options import CLIError, JsonOpt, PasswordFileOpt, read_passphrase
from strongroom.cli.output import print_json

agent_app = typer.Typer(no_args_is_help=True, help="The agent of a protected machine.")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="STRONGROOM_AGENT_CONFIG",
        help="The agent's folder (default /etc/strongroom-agent as root, else "
        "~/.config/strongroom-agent).",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(agent_app, name="agent")


def _folder(config: Path | None) -> Path:
    from strongroom.agent.config import default_dir

    return config if config is not None else default_dir()


@agent_app.command("register")
def agent_register(
    server: Annotated[
        str, typer.Option("--server", envvar="STRONGROOM_SERVER", help="https://HOST:PORT.")
    ],
    enrol_token_file: Annotated[
        Path, typer.Option("--enrol-token-file", help="A file holding an enrol token.")
    ],
    name: Annotated[str, typer.Option("--name", help="This machine's name on the server.")],
    password_file: PasswordFileOpt = None,
    config: ConfigOpt = None,
    ca_file: Annotated[
        Path | None, typer.Option("--ca-file", help="PEM of a private CA the server uses.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register this machine: the server gives it a backup token for its items; the token
    and the vault passphrase are kept in the agent's folder (mode 0600; the passphrase is
    never sent)."""
    from strongroom.agent.loop import register as do_register
    from strongroom.cli.options import passphrase_from_file

    token = passphrase_from_file(enrol_token_file).strip()
    passphrase = read_passphrase(password_file, confirm=True, prompt="vault passphrase")
    folder = _folder(config)
    if (folder / "agent.json").exists():
        raise CLIError(f"{folder} holds a registered agent already: use another --config")
    made = do_register(server, token, name, folder, passphrase, str(ca_file) if ca_file else None)
    if as_json:
        print_json({"machine": made.machine, "server": made.server, "config": str(folder)})
    else:
        typer.echo(f"registered machine {made.machine} with {made.server}; config in {folder}")


@agent_app.command("run")
def agent_run(
    config: ConfigOpt = None,
    wait: Annotated[
        float, typer.Option("--wait", min=1, help="Seconds of each long poll (at most 60).")
    ] = 30.0,
    once: Annotated[bool, typer.Option("--once", help="Run one job, then exit.")] = False,
) -> None:
    """Pull jobs from the server and run them until stopped (SIGTERM or Ctrl-C)."""
    from strongroom.agent.loop import Agent

    Agent(_folder(config), wait=min(wait, 60.0)).run(once=once)


@agent_app.command("add-token")
def agent_add_token(
    role: Annotated[str, typer.Option("--role", help="The token's role: maintenance.")],
    token_file: Annotated[
        Path, typer.Option("--token-file", help="A file holding the token (`token create`).")
    ],
    config: ConfigOpt = None,
) -> None:
    """Keep a maintenance token in the agent's config (mode 0600), used only for the prune
    jobs of the vaults whose prune schedule names this machine."""
    from dataclasses import replace

    from strongroom.agent.config import AgentConfig
    from strongroom.cli.options import passphrase_from_file

    if role != "maintenance":
        raise typer.BadParameter(f"--role must be maintenance, not {role!r}")
    token = passphrase_from_file(token_file).strip()
    if not token:
        raise CLIError(f"the token file {token_file} is empty")
    folder = _folder(config)
    made = replace(AgentConfig.load(folder), maintenance_token=token)
    made.save_config(folder)
    typer.echo(f"machine {made.machine} keeps a maintenance token for prune jobs")
