"""A stand-in helper for the worker pool's tests (files/workerproc.py): it answers ``job``
requests, slowly when asked to, and drops the one marked ``lose``, a fault real workers cannot
be made to show, and leaves out its ``ready`` when told to.

    python -m tests.files.lossy_worker FD
"""

from __future__ import annotations

import sys
import time
from typing import Any

from strongroom.files.channel import Channel
from strongroom.files.workermain import serve_main


def _serve(conn: Channel) -> None:
    first = conn.recv()  # ("open",) or ("open", "no ready")
    if len(first) == 1:
        conn.send(("ready",))
    handled = 0
    while True:
        try:
            msg: tuple[Any, ...] = conn.recv()
        except EOFError:
            return
        if msg[0] == "status":
            conn.send(("status", handled))
            continue
        handled += 1
        if msg[1] == "slow":
            time.sleep(1.0)
        if msg[1] != "lose":
            conn.send(("job", msg[1]))


if __name__ == "__main__":
    sys.exit(serve_main(sys.argv, _serve))
