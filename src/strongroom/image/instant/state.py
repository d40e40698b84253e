"""Where instant recoveries keep their state: one folder per recovery, under a state root.

The root is ``$STRONGROOM_INSTANT_DIR``, else ``/run/strongroom/instant`` for root, else
``$XDG_RUNTIME_DIR/strongroom/instant`` (or ``/tmp/strongroom-<uid>/instant``).  A recovery
NAME has ``ROOT/NAME/`` (mode 0711: qemu must reach the socket folder inside) holding
``instant.json`` (what was restored, from which vault, where the overlays are), ``serve.pid``
and ``serve.log`` of its background export, and ``sock/nbd.sock`` (``sock/`` is 0700, owned
by the user qemu runs as, so only qemu and root reach the export).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import asdict, field
from pathlib import Path
from typing import Any, Final

from strongroom.errors import ImageError
from strongroom.image.nbd.lifetime import pid_alive
from strongroom.records import dataclass

__all__ = ["InstantDisk", "InstantRecord", "records", "state_root"]

STATE_ENV: Final = "STRONGROOM_INSTANT_DIR"
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


def state_root() -> Path:
    env = os.environ.get(STATE_ENV)
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/run/strongroom/instant")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "strongroom" / "instant"
    return Path(f"/tmp/strongroom-{os.geteuid()}/instant")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ImageError(f"invalid VM name {name!r} for an instant recovery")
    return name


@dataclass
class InstantDisk:
    target: str
    overlay: str
    virtual_size: int


@dataclass
class InstantRecord:
    name: str
    point: str
    vault: str
    uri: str
    disks: list[InstantDisk] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    root: str = ""
    supervisor: str = "process"  # "process" (our supervisor) or "systemd" (a transient unit)
    in_place: bool = False  # --in-place: the point's own domain, replaced
    original_xml: str | None = None  # --in-place: the domain's definition before, for abort
    replaced: list[str] = field(default_factory=list)  # --in-place: the disks it replaces

    @property
    def folder(self) -> Path:
        return Path(self.root or state_root()) / self.name

    @property
    def socket(self) -> Path:
        return self.folder / "sock" / "nbd.sock"

    @property
    def pid_file(self) -> Path:
        return self.folder / "serve.pid"

    @property
    def log_file(self) -> Path:
        return self.folder / "serve.log"

    @property
    def supervisor_pid_file(self) -> Path:
        return self.folder / "supervisor.pid"

    @property
    def supervisor_file(self) -> Path:
        return self.folder / "supervisor.json"

    @property
    def unit(self) -> str:
        return f"strongroom-instant-{self.name}"

    def supervisor_pid(self) -> int | None:
        try:
            pid = int(self.supervisor_pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def save(self) -> None:
        doc = asdict(self)
        temp = self.folder / "instant.json.tmp"
        temp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        os.replace(temp, self.folder / "instant.json")

    @classmethod
    def load(cls, name: str, root: Path | None = None) -> InstantRecord:
        folder = (root or state_root()) / check_name(name)
        try:
            doc: dict[str, Any] = json.loads((folder / "instant.json").read_text())
            doc["disks"] = [InstantDisk(**d) for d in doc["disks"]]
            return cls(**doc)
        except FileNotFoundError:
            raise ImageError(f"no instant recovery named {name!r} (in {folder.parent})") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise ImageError(f"{folder}/instant.json is damaged ({exc})") from None

    def export_pid(self) -> int | None:
        """The background export's pid while it runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def export_running(self) -> bool:
        return self.export_pid() is not None and self.socket.exists()

    def create_folder(self, owner: tuple[int, int] | None) -> None:
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.folder.mkdir(mode=0o711)
        except FileExistsError:
            raise ImageError(
                f"an instant recovery named {self.name!r} exists: finalize or abort it first"
            ) from None
        os.chmod(self.folder, 0o711)  # qemu must traverse it (umask aside)
        sock = self.folder / "sock"
        sock.mkdir(mode=0o700)
        if owner is not None:
            os.chown(sock, *owner)


def records(root: Path | None = None) -> list[InstantRecord]:
    base = root or state_root()
    if not base.is_dir():
        return []
    found = []
    for entry in sorted(base.iterdir()):
        if (entry / "instant.json").is_file():
            with contextlib.suppress(ImageError):
                found.append(InstantRecord.load(entry.name, base))
    return found
