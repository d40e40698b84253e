"""The helper's side of a worker process (files/workerproc.py is the parent's): its
``main``, which the worker modules (procwork, restorework) call.  Kept apart so a helper
loads none of the parent's machinery (subprocess, the pool)."""

from __future__ import annotations

import contextlib
import pickle
import signal
from collections.abc import Callable

from strongroom import collector
from strongroom.errors import StrongroomError
from strongroom.files.channel import Channel


def _report(conn: Channel, exc: BaseException) -> None:
    try:
        blob = pickle.dumps(exc)
    except (pickle.PicklingError, TypeError, AttributeError):
        blob = b""
    with contextlib.suppress(OSError):
        conn.send(("failed", blob, str(exc) or type(exc).__name__))


def _terminated(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the clean-up is not cut short
    raise SystemExit(1)  # unwinds through the helper's clean-up: its temporary files go


def serve_main(argv: list[str], serve: Callable[[Channel], None]) -> int:
    """A helper's ``main``: SIGINT is ignored (the terminal sends it to the whole process
    group, and the parent decides), SIGTERM unwinds through ``serve``'s clean-up, and a
    failure is reported to the parent as a ``failed`` message."""
    collector.start_work()  # loaded with the collector off (workerproc._BOOT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminated)
    conn = Channel(int(argv[1]))
    try:
        serve(conn)
    except (StrongroomError, OSError, MemoryError) as exc:
        _report(conn, exc)
        return 1
    except EOFError:
        return 0
    finally:
        # Done, one way or another: the parent's SIGTERM of an abandoned run may come while
        # this helper exits on the end of its input, and must not raise in the middle of that.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        conn.close()
    return 0
