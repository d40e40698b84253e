"""Run one command and report its own wall time and ``rusage``: the small parent of a tool.

Linux carries a process's high-water RSS across ``exec``, and a forked (or vforked) child
starts with its parent's pages, so a tool started straight from the harness (tens of MiB of
Python) reports at least the harness's own peak RSS as its ``ru_maxrss``: every tool looked
as big as the harness.  Started from this small process instead (``python -S``, a few MiB),
a tool reports its own peak.

    python -S spawn.py REPORT_FD COMMAND [ARG...]

writes ``wall user system maxrss_kib`` to REPORT_FD and exits with the command's status.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def main(argv: list[str]) -> int:
    report, command = int(argv[0]), argv[1:]
    started = time.perf_counter()
    pid = os.posix_spawnp(command[0], command, os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    line = f"{wall} {usage.ru_utime} {usage.ru_stime} {usage.ru_maxrss}\n"
    os.write(report, line.encode())
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the tool gets it; we report how it ended
    sys.exit(main(sys.argv[1:]))
