"""The export as a transient systemd unit, where systemd runs as PID 1.

``systemd-run --unit strongroom-instant-NAME`` with ``Restart=on-failure`` (exit 130, an
asked-for stop, counts as success) runs ``strongroom instant run NAME``; the passphrase
reaches it as a systemd credential (``LoadCredential=`` of a 0600 file in the state folder,
which is on /run for root), never on a command line or in the environment.  The export
reads ``$CREDENTIALS_DIRECTORY/passphrase`` (see ``cli/instant_bg.py``).  A served vault's
token (``STRONGROOM_TOKEN``: a dashboard's instant recovery runs with its agent's) is a second
credential, ``token``, for the same reason; the token file's path, the CA file and the
plain-HTTP switch are carried as environment (no secrets).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from strongroom.errors import ImageError
from strongroom.image.instant.state import STATE_ENV, InstantRecord
from strongroom.image.instant.supervisor import export_command
from strongroom.storage.http import ALLOW_HTTP_ENV, CA_FILE_ENV, TOKEN_ENV, TOKEN_FILE_ENV

__all__ = [
    "CREDENTIAL",
    "TOKEN_CREDENTIAL",
    "start_unit",
    "stop_unit",
    "systemd_is_init",
    "unit_argv",
]

CREDENTIAL: Final = "passphrase"
TOKEN_CREDENTIAL: Final = "token"
SUPERVISOR_ENV: Final = "STRONGROOM_INSTANT_SUPERVISOR"  # "process" forces our supervisor
_CARRIED_ENV: Final = (
    "PYTHONPATH",
    STATE_ENV,
    "STRONGROOM_CONFIG",
    TOKEN_FILE_ENV,
    CA_FILE_ENV,
    ALLOW_HTTP_ENV,
)


def systemd_is_init() -> bool:
    """sd_booted()'s test: /run/systemd/system exists only when systemd is PID 1."""
    if os.environ.get(SUPERVISOR_ENV) == "process":
        return False
    return Path("/run/systemd/system").is_dir()


def credential_file(record: InstantRecord, name: str = CREDENTIAL) -> Path:
    return record.folder / name


def _write_credential(path: Path, secret: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")


def unit_argv(record: InstantRecord, env: Mapping[str, str] | None = None) -> list[str]:
    """The ``systemd-run`` command line that starts the export as a transient unit."""
    env = os.environ if env is None else env
    argv = ["systemd-run"]
    if os.geteuid() != 0:
        argv.append("--user")
    argv += [
        f"--unit={record.unit}",
        f"--description=strongroom instant recovery {record.name} (NBD export)",
        "--collect",
        "--property=Type=simple",
        "--property=Restart=on-failure",
        "--property=RestartSec=2",
        "--property=SuccessExitStatus=130",
        f"--property=LoadCredential={CREDENTIAL}:{credential_file(record)}",
        "--working-directory=/",
    ]
    if env.get(TOKEN_ENV):
        token = credential_file(record, TOKEN_CREDENTIAL)
        argv.append(f"--property=LoadCredential={TOKEN_CREDENTIAL}:{token}")
    for name in _CARRIED_ENV:
        if env.get(name):
            argv.append(f"--setenv={name}={env[name]}")
    if not env.get(STATE_ENV):
        argv.append(f"--setenv={STATE_ENV}={record.folder.parent}")
    return [*argv, "--", *export_command(record.name)]


def _systemctl(record: InstantRecord, *args: str) -> subprocess.CompletedProcess[str]:
    user = ["--user"] if os.geteuid() != 0 else []
    return subprocess.run(
        ["systemctl", *user, *args, record.unit], capture_output=True, text=True, check=False
    )


def start_unit(record: InstantRecord, passphrase: str, timeout: float = 120.0) -> int:
    """Start the unit and wait until the export serves; its pid."""
    _write_credential(credential_file(record), passphrase)
    token = os.environ.get(TOKEN_ENV)
    if token:
        _write_credential(credential_file(record, TOKEN_CREDENTIAL), token.strip())
    proc = subprocess.run(unit_argv(record), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImageError(f"systemd-run failed for {record.unit}: {proc.stderr.strip()}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = record.export_pid()
        if pid is not None and record.socket.exists():
            return pid
        if _systemctl(record, "is-failed", "--quiet").returncode == 0:
            break
        time.sleep(0.2)
    stop_unit(record)
    raise ImageError(f"the export of {record.name} did not start: journalctl -u {record.unit}")


def stop_unit(record: InstantRecord) -> None:
    _systemctl(record, "stop")
    credential_file(record).unlink(missing_ok=True)
    credential_file(record, TOKEN_CREDENTIAL).unlink(missing_ok=True)
