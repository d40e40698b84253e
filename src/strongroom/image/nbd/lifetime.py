"""Child processes that die with strongroom, and cleaning up after runs that were killed.

A ``kill -9`` runs no ``finally``: a ``qemu-nbd --persistent`` it started would serve on,
and its private folder would stay.  So:

* :func:`spawn` starts a child with ``PR_SET_PDEATHSIG = SIGKILL``.  The kernel sends the
  signal when the *thread* that forked the child ends, so children are forked from the main
  thread, or from one long-lived spawner thread when called from another thread (a worker
  thread that ends would otherwise take its qemu-nbd with it).
* Leftovers carry the owner's pid in their names (``strongroom-nbd-<pid>-*`` folders,
  ``.<name>.strongroom-<host>-<pid>-*.tmp`` images); :func:`pid_alive` tells whether that
  owner still runs, and the next run removes what dead owners left.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

__all__ = ["kill_servers_of", "pid_alive", "spawn"]

_PR_SET_PDEATHSIG: Final = 1
_LIBC = ctypes.CDLL(None, use_errno=True)
_PRCTL = _LIBC.prctl
_PRCTL.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_spawner: list[ThreadPoolExecutor] = []  # one long-lived thread, made on first use
_spawner_lock = threading.Lock()


def _die_with(parent: int) -> Callable[[], None]:
    def preexec() -> None:  # in the child, between fork and exec: no locks, no imports
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl
            os._exit(1)

    return preexec


def _popen(command: list[str], kwargs: dict[str, Any]) -> subprocess.Popen[bytes]:
    # preexec_fn is safe here: it calls one C function and os functions, takes no lock
    # another thread could hold, and imports nothing.
    return subprocess.Popen(command, preexec_fn=_die_with(os.getpid()), **kwargs)  # noqa: PLW1509


def spawn(command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(command, **kwargs)``; the child is SIGKILLed when we die."""
    if threading.current_thread() is threading.main_thread():
        return _popen(command, kwargs)
    with _spawner_lock:
        if not _spawner:
            _spawner.append(ThreadPoolExecutor(1, thread_name_prefix="strongroom-spawner"))
    return _spawner[0].submit(_popen, command, kwargs).result()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return not stat.rpartition(")")[2].strip().startswith("Z")


def kill_servers_of(socket: Path, program: str) -> None:
    """SIGKILL our own ``program`` processes started with ``--socket=SOCKET``."""
    wanted = f"--socket={socket}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != os.geteuid():
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if Path(os.fsdecode(argv[0])).name == program and wanted in argv:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
