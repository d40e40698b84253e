"""The background export of an instant recovery: started, waited for, stopped.

``strongroom instant run NAME`` (hidden) is the export: it reads the passphrase from its
stdin, opens the vault the recovery's record names, serves the point on the record's socket
(holding a shared vault lock, like ``serve``), writes ``serve.pid`` and tells its starter it
is ready through an inherited pipe (``STRONGROOM_READY_FD``).  It runs in its own session, so
it outlives the command that started it; its output goes to ``serve.log``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Final

from strongroom.errors import ImageError
from strongroom.image.instant.serve import PointServer, ServeOptions
from strongroom.image.instant.state import InstantRecord
from strongroom.image.nbd.lifetime import pid_alive
from strongroom.vault import Vault

__all__ = ["READY_ENV", "serve_record", "start_export", "stop_export"]

READY_ENV: Final = "STRONGROOM_READY_FD"
_START_TIMEOUT: Final = 120.0


def _log_tail(record: InstantRecord) -> str:
    try:
        lines = record.log_file.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def start_export(record: InstantRecord, passphrase: str) -> int:
    """Start the background export and wait until it serves; its pid."""
    if record.export_running():
        raise ImageError(f"the export of {record.name} is already running")
    with contextlib.suppress(FileNotFoundError):
        record.pid_file.unlink()
    ready_r, ready_w = os.pipe()
    env = dict(os.environ, **{READY_ENV: str(ready_w)})
    env.pop("STRONGROOM_PASSWORD", None)
    command = [sys.executable, "-m", "strongroom.cli.main", "instant", "run", record.name]
    with open(record.log_file, "ab") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=log,
            pass_fds=(ready_w,),
            env=env,
            start_new_session=True,  # outlives us, untouched by our terminal's signals
            cwd="/",
        )
    os.close(ready_w)
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(passphrase.encode() + b"\n")
        proc.stdin.close()
    answer = _wait_ready(ready_r, proc)
    if answer != "ok":
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        why = answer or _log_tail(record) or f"exit code {proc.returncode}"
        raise ImageError(f"the export of {record.name} did not start: {why}")
    return proc.pid


def _wait_ready(fd: int, proc: subprocess.Popen[bytes]) -> str:
    data = b""
    deadline = time.monotonic() + _START_TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                data += chunk
            elif proc.poll() is not None and not data:
                break
    finally:
        os.close(fd)
    return data.decode(errors="replace").strip()


def stop_export(record: InstantRecord, timeout: float = 15.0) -> None:
    """SIGTERM the export (SIGKILL after ``timeout``) and wait until it is gone."""
    pid = record.export_pid()
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
    for path in (record.pid_file, record.socket):
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
