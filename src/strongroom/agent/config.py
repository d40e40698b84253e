"""The agent's configuration folder: ``agent.json`` (server, machine, token) and
``passphrase`` (the vault passphrase, never sent to the server), both mode 0600, plus the
files cache and per-item lock files.

The passphrase lives on the machine because encryption happens there: the server holds no
key.  Whoever reads this folder can read and add backups of this machine's items (its token
is scoped to them) but cannot delete any (a backup token never can).  A designated
maintenance agent (``strongroom agent add-token --role maintenance``) also holds a
maintenance token, used only for the prune jobs of the vaults it is named for; whoever reads
its folder can then prune, which the server's soft delete and immutability still bound.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from strongroom.errors import StrongroomError
from strongroom.records import dataclass

CONFIG_ENV = "STRONGROOM_AGENT_CONFIG"
CONFIG_FILE = "agent.json"
PASSPHRASE_FILE = "passphrase"


class AgentError(StrongroomError):
    """The agent's configuration is missing or wrong, or registration failed."""


def default_dir() -> Path:
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/etc/strongroom-agent")
    return Path.home() / ".config" / "strongroom-agent"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    server: str
    machine: str
    token: str
    ca_file: str | None = None
    maintenance_token: str | None = None
    """Used only for prune jobs (``strongroom agent add-token --role maintenance``)."""

    def save(self, folder: Path, passphrase: str) -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)
        _write_private(folder / PASSPHRASE_FILE, passphrase + "\n")
        self.save_config(folder)

    def save_config(self, folder: Path) -> None:
        """Rewrite ``agent.json`` alone (mode 0600)."""
        _write_private(folder / CONFIG_FILE, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> AgentConfig:
        path = folder / CONFIG_FILE
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                str(doc["server"]),
                str(doc["machine"]),
                str(doc["token"]),
                doc.get("ca_file"),
                doc.get("maintenance_token"),
            )
        except FileNotFoundError:
            raise AgentError(
                f"no agent configuration in {folder}: run `strongroom agent register` first"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AgentError(f"cannot read the agent configuration {path}: {exc}") from None


def load_passphrase(folder: Path) -> str:
    path = folder / PASSPHRASE_FILE
    try:
        text = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentError(f"cannot read the agent's passphrase file {path}: {exc}") from None
    if not text:
        raise AgentError(f"the agent's passphrase file {path} is empty")
    return text


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file created with mode 0600 (never briefly world-readable)."""
    tmp = path.with_name(f".tmp-{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
