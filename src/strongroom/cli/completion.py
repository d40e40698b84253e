"""``strongroom completion bash|zsh``: the shell script that completes commands and options.

The script runs ``strongroom`` with ``_STRONGROOM_COMPLETE`` set; :func:`strongroom.cli.main`
then gets no command name, so it builds the whole command tree (cli/main.py builds only the
command on the command line otherwise), and typer answers from it.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

COMPLETE_VAR = "_STRONGROOM_COMPLETE"
SHELLS = ("bash", "zsh")


def prepare() -> None:
    """Register typer's shell classes when a completion script asks (typer does this in
    apps with ``add_completion``; strongroom's has its own command instead)."""
    if os.environ.get(COMPLETE_VAR):
        from typer._completion_classes import completion_init

        completion_init()


def register(app: typer.Typer) -> None:
    app.command("completion")(completion_cmd)


def completion_cmd(
    shell: Annotated[str, typer.Argument(help="bash or zsh.")],
) -> None:
    """Print the shell completion script: `eval "$(strongroom completion bash)"` in ~/.bashrc,
    or `strongroom completion zsh > ~/.zfunc/_strongroom` (with ~/.zfunc in fpath)."""
    if shell not in SHELLS:
        raise typer.BadParameter("must be bash or zsh", param_hint="'SHELL'")
    from typer._completion_shared import get_completion_script

    typer.echo(
        get_completion_script(prog_name="strongroom", complete_var=COMPLETE_VAR, shell=shell)
    )
