"""The ``strongroom`` console script: the CLI, loaded with the cyclic garbage collector off
(:mod:`strongroom.collector` says why).  It stays off until :func:`strongroom.cli.main.run`
freezes what was loaded and turns it back on (``collector.start_work``);
:func:`strongroom.cli.options.open_vault` freezes once more after the vault's modules load.
Start-up to an opened vault: 0.231 -> 0.173 s median of 80 (docs/benchmarks.md, "Session 11").
Kept apart from :mod:`strongroom.cli.main`, which tests import, so that only the command's
own process runs this way.
"""

from __future__ import annotations

import gc


def run() -> None:
    """Console-script entry point."""
    gc.disable()
    from strongroom.cli.main import run as run_cli

    run_cli()
