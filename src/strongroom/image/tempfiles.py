"""Temporary files beside a restore's target, and removing those a killed restore left.

A new image (or XML) is written as ``.<name>.strongroom-<host>-<pid>-<random>.tmp`` in the
target's folder and renamed into place.  A restore killed with ``kill -9`` leaves that file,
full-size for a raw image; the next restore to the same target removes it, but only when it
is clearly ours: the pattern matches, it is a regular file of our user, it was made on this
host, and its pid no longer runs.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import socket
import stat
from pathlib import Path

from strongroom.image.nbd.lifetime import pid_alive

__all__ = ["remove_stale_temps", "temp_path"]


def _host() -> str:
    return socket.gethostname().replace("/", "_") or "localhost"


def temp_path(final: Path) -> Path:
    """A fresh temporary name for ``final``, in its folder."""
    tag = f"{_host()}-{os.getpid()}-{os.urandom(4).hex()}"
    return final.parent / f".{final.name}.strongroom-{tag}.tmp"


def remove_stale_temps(final: Path) -> list[Path]:
    """Remove the temporary files of ``final`` whose restores died; the paths removed."""
    pattern = re.compile(
        rf"\.{re.escape(final.name)}\.strongroom-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{{8}}\.tmp"
    )
    removed = []
    for entry in final.parent.glob(f".{glob.escape(final.name)}.strongroom-*.tmp"):
        match = pattern.fullmatch(entry.name)
        if match is None or match["host"] != _host():
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            st = entry.lstat()
            if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
                entry.unlink()
                removed.append(entry)
    return removed
