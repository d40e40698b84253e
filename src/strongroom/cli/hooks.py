"""``--pre-hook CMD`` and ``--post-hook CMD`` around a file backup.

Both run through ``/bin/sh -c`` once the vault is open, with their output sent to stderr
(stdout stays the command's, for ``--json``).  The environment gets ``STRONGROOM_HOOK``
(``pre`` or ``post``), ``STRONGROOM_SOURCE``, and for the post-hook ``STRONGROOM_STATUS``
(``success``, ``partial``: committed but some files unreadable, ``failed`` or
``interrupted``) and ``STRONGROOM_POINT`` (the new point's id, empty when none).

- A pre-hook that fails (exit status not 0, or it cannot run) stops the backup: one line,
  exit 1, no point.
- The post-hook runs whenever the pre-hook was started (or, without one, the backup was),
  also when the pre-hook or the backup failed: it is where a database is unlocked again.
- A failing post-hook after a backup that committed its point is an error (exit 1; the line
  names the point, which stays).  After a failed backup the backup's error is the one
  reported and the post-hook's failure is a warning.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from strongroom.cli.options import CLIError
from strongroom.cli.output import warn
from strongroom.records import dataclass

EXIT_PARTIAL = 3


class HookFailed(CLIError):
    """A hook command exited with a failure or could not run."""


@dataclass
class HookRun:
    """What the post-hook is told."""

    source: str
    point: str = ""


def run_hook(which: str, command: str, env: dict[str, str]) -> None:
    try:
        to_stderr: int | None = sys.stderr.fileno()
    except (OSError, ValueError):  # stderr is not a file (captured): pass the output on
        to_stderr = None
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", command],
            stdout=subprocess.PIPE if to_stderr is None else to_stderr,
            env={**os.environ, "STRONGROOM_HOOK": which, **env},
            check=False,
        )
    except OSError as exc:
        raise HookFailed(f"{which}-hook cannot run: {exc.strerror or exc}") from None
    if done.stdout:
        sys.stderr.write(done.stdout.decode(errors="replace"))
    if done.returncode != 0:
        how = f"exit {done.returncode}" if done.returncode > 0 else f"signal {-done.returncode}"
        raise HookFailed(f"{which}-hook failed ({how}): {command}")


@contextmanager
def around(pre: str | None, post: str | None, source: str) -> Iterator[HookRun]:
    """Run the body between the hooks (see the module docstring)."""
    run = HookRun(source)
    base = {"STRONGROOM_SOURCE": source}
    try:
        if pre is not None:
            try:
                run_hook("pre", pre, base)
            except HookFailed as exc:
                raise HookFailed(f"{exc}; no backup was made") from None
        yield run
    except typer.Exit as exc:
        if exc.exit_code != EXIT_PARTIAL:
            _post_after_failure(post, base, run, "failed")
            raise
        _post(post, base, run, "partial")
        raise
    except KeyboardInterrupt:
        _post_after_failure(post, base, run, "interrupted")
        raise
    except BaseException:
        _post_after_failure(post, base, run, "failed")
        raise
    else:
        _post(post, base, run, "success")


def _post(post: str | None, base: dict[str, str], run: HookRun, status: str) -> None:
    if post is None:
        return
    try:
        run_hook("post", post, {**base, "STRONGROOM_STATUS": status, "STRONGROOM_POINT": run.point})
    except HookFailed as exc:
        raise HookFailed(f"{exc} (the backup itself committed point {run.point[:12]})") from None


def _post_after_failure(post: str | None, base: dict[str, str], run: HookRun, status: str) -> None:
    if post is None:
        return
    try:
        run_hook("post", post, {**base, "STRONGROOM_STATUS": status, "STRONGROOM_POINT": run.point})
    except HookFailed as exc:
        warn(str(exc))
