"""The supervisor of an instant recovery's export (where systemd is not PID 1).

``strongroom instant supervise NAME`` (hidden) reads the passphrase from its stdin, detaches
(double fork: reparented to init, not a session leader, stdin on /dev/null, output to
``serve.log``), writes ``supervisor.pid`` and runs the export (``instant run NAME``) as its
child.  An export that exits abnormally (killed by a signal other than SIGTERM/SIGINT, or
an exit code other than 0 and 130) is started again after a back-off (0.5 s doubling to
30 s, back to 0.5 s after a minute of service); ``supervisor.json`` counts the restarts.
SIGTERM to the supervisor stops the export and then the supervisor.  The first start's
outcome is forwarded to the starter's ready pipe, so ``restore --instant`` knows it serves.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, Final

from strongroom.image.instant.state import InstantRecord

__all__ = ["READY_ENV", "clean_exit", "daemonize", "export_command", "read_info", "supervise"]

READY_ENV: Final = "STRONGROOM_READY_FD"
_FIRST_DELAY: Final = 0.5
_MAX_DELAY: Final = 30.0
_STABLE: Final = 60.0  # a run this long resets the back-off
_READY_TIMEOUT: Final = 120.0


def export_command(name: str) -> list[str]:
    return [sys.executable, "-m", "strongroom.cli.main", "instant", "run", name]


def clean_exit(returncode: int) -> bool:
    """Exit codes that mean "asked to stop" (no restart), as systemd's on-failure sees them."""
    return returncode in (0, 130, -signal.SIGTERM, -signal.SIGINT)


def read_info(record: InstantRecord) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(record.supervisor_file.read_text())
        return doc
    except (OSError, ValueError):
        return {}


def _write_info(record: InstantRecord, **values: Any) -> None:
    doc = read_info(record) | values
    temp = record.supervisor_file.with_suffix(".tmp")
    temp.write_text(json.dumps(doc, sort_keys=True) + "\n")
    os.replace(temp, record.supervisor_file)


def daemonize(log_path: str) -> None:
    """Double fork: the grandchild runs on, reparented to init, without a terminal."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)


def _log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    sys.stderr.write(f"{stamp} supervisor: {message}\n")
    sys.stderr.flush()


def _spawn(record: InstantRecord, passphrase: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start the export; (process, its readiness answer: "ok" or why not)."""
    ready_r, ready_w = os.pipe()
    env = dict(os.environ, **{READY_ENV: str(ready_w)})
    proc = subprocess.Popen(
        export_command(record.name), stdin=subprocess.PIPE, pass_fds=(ready_w,), env=env, cwd="/"
    )
    os.close(ready_w)
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(passphrase.encode() + b"\n")
        proc.stdin.close()
    return proc, wait_ready(ready_r)


def wait_ready(fd: int, timeout: float = _READY_TIMEOUT) -> str:
    """What the process at the other end of the pipe says ("" if it closed it silently)."""
    import select

    data = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                data += chunk
    finally:
        os.close(fd)
    return data.decode(errors="replace").strip()


class _Stop:
    def __init__(self) -> None:
        self.requested = False
        self.child: subprocess.Popen[bytes] | None = None

    def handle(self, signum: int, frame: object) -> None:
        self.requested = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)


def _pause(seconds: float, stop: _Stop) -> None:
    deadline = time.monotonic() + seconds
    while not stop.requested and time.monotonic() < deadline:
        time.sleep(0.1)


def supervise(record: InstantRecord, passphrase: str, ready: Callable[[str], None]) -> int:
    """Run the export until asked to stop; restart it when it dies.  The exit code."""
    stop = _Stop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop.handle)
    record.supervisor_pid_file.write_text(f"{os.getpid()}\n")
    _write_info(record, pid=os.getpid(), started=time.time())
    delay, first = _FIRST_DELAY, True
    try:
        while not stop.requested:
            began = time.monotonic()
            stop.child, answer = _spawn(record, passphrase)
            if first:
                ready(answer)
                if answer != "ok":
                    stop.child.wait()
                    return 1
                first = False
            _write_info(record, export_pid=stop.child.pid)
            code = stop.child.wait()
            if stop.requested or clean_exit(code):
                break
            delay = _FIRST_DELAY if time.monotonic() - began > _STABLE else delay
            _write_info(record, restarts=read_info(record).get("restarts", 0) + 1, last_exit=code)
            _log(f"export exited with {code}: restarting in {delay:.1f}s")
            _pause(delay, stop)
            delay = min(delay * 2, _MAX_DELAY)
    finally:
        with contextlib.suppress(FileNotFoundError):
            record.supervisor_pid_file.unlink()
    return 0
