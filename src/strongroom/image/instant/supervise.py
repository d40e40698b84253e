"""The background export of an instant recovery: started, supervised, stopped.

``strongroom instant run NAME`` (hidden) is the export: it reads the passphrase (stdin, or
the systemd credential), opens the vault the recovery's record names, serves the point on
the record's socket (holding a shared vault lock, like ``serve``), writes ``serve.pid`` and
says it is ready through an inherited pipe (``STRONGROOM_READY_FD``).  It outlives the
command that started it and is restarted when it dies: by a transient systemd unit where
systemd is PID 1 (:mod:`.systemd`), else by ``strongroom instant supervise NAME``
(:mod:`.supervisor`), a detached process with its own pid file; both log to ``serve.log``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Final

from strongroom.errors import ImageError
from strongroom.image.instant.serve import PointServer, ServeOptions
from strongroom.image.instant.state import InstantRecord
from strongroom.image.instant.supervisor import READY_ENV, wait_ready
from strongroom.image.instant.systemd import start_unit, stop_unit, systemd_is_init
from strongroom.image.nbd.lifetime import pid_alive
from strongroom.vault import Vault

__all__ = ["READY_ENV", "choose_supervisor", "serve_record", "start_export", "stop_export"]

_STOP_TIMEOUT: Final = 15.0


def choose_supervisor() -> str:
    return "systemd" if systemd_is_init() else "process"


def _log_tail(record: InstantRecord) -> str:
    try:
        lines = record.log_file.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def start_export(record: InstantRecord, passphrase: str) -> int:
    """Start the supervised export and wait until it serves; the export's pid."""
    if record.export_running():
        raise ImageError(f"the export of {record.name} is already running")
    sup = record.supervisor_pid()
    if sup is not None:
        raise ImageError(
            f"the export of {record.name} is supervised (pid {sup}) and restarted by itself; "
            f"see {record.log_file}"
        )
    with contextlib.suppress(FileNotFoundError):
        record.pid_file.unlink()
    if record.supervisor == "systemd":
        return start_unit(record, passphrase)
    return _start_supervisor(record, passphrase)


def _start_supervisor(record: InstantRecord, passphrase: str) -> int:
    ready_r, ready_w = os.pipe()
    env = dict(os.environ, **{READY_ENV: str(ready_w)})
    env.pop("STRONGROOM_PASSWORD", None)
    command = [sys.executable, "-m", "strongroom.cli.main", "instant", "supervise", record.name]
    with open(record.log_file, "ab") as log:
        proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=log, stderr=log, pass_fds=(ready_w,),
            env=env, cwd="/",
        )  # fmt: skip
    os.close(ready_w)
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(passphrase.encode() + b"\n")
        proc.stdin.close()
    answer = wait_ready(ready_r)  # the detached supervisor holds the pipe, not ``proc``
    proc.wait()  # the first fork's parent: gone at once
    pid = record.export_pid()
    if answer != "ok" or pid is None:
        stop_export(record)
        why = answer or _log_tail(record) or "no answer"
        raise ImageError(f"the export of {record.name} did not start: {why}")
    return pid


def _terminate(pid: int, deadline: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    while pid_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def stop_export(record: InstantRecord, timeout: float = _STOP_TIMEOUT) -> None:
    """Stop the supervisor (or unit) and the export, and wait until they are gone."""
    if record.supervisor == "systemd":
        stop_unit(record)
    deadline = time.monotonic() + timeout
    sup = record.supervisor_pid()
    export = record.export_pid()
    if sup is not None:
        _terminate(sup, deadline)  # it stops its export first
    if export is not None:
        _terminate(export, deadline)
    for path in (record.pid_file, record.socket, record.supervisor_pid_file):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def serve_record(vault: Vault, record: InstantRecord, ready: Callable[[str], None]) -> None:
    """The export itself (in ``instant run``): serve until interrupted."""
    point = vault.resolve_point(record.point)
    with PointServer(vault, point, ServeOptions(socket=record.socket)) as server:
        os.chmod(record.socket, 0o666)  # the 0700 folder around it decides who gets in
        record.pid_file.write_text(f"{os.getpid()}\n")
        sys.stdout.write(f"serving {', '.join(server.uris().values())}\n")
        sys.stdout.flush()
        ready("ok")
        try:
            while True:
                time.sleep(3600)
        finally:
            with contextlib.suppress(FileNotFoundError):
                record.pid_file.unlink()
