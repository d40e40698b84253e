"""Per-tool adapters: the commands that init a repository, back up, restore, and its size.

Every tool runs with its defaults except what the issue fixes: restic with its default
compression (repository v2, ``auto``), borg with ``zstd,3`` or ``lz4`` and ``repokey``
encryption, strongroom as ``strongroom init`` creates it.  Key derivation runs with each tool's
default parameters on every command (Argon2id t=4 m=32 MiB p=2 for strongroom, scrypt for
restic, PBKDF2 for borg): a fixed per-command cost, included in the timings.  restic chooses
its scrypt cost at ``init`` (:meth:`Restic.key_params`), so the report notes it per data set.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

PASSWORD = "bench-password"


class Step(Enum):
    """The backups of one run, in order."""

    FIRST = "first"
    UNCHANGED = "unchanged"
    CHANGED = "changed"


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str]
    cwd: Path | None = None


@dataclass(frozen=True)
class Workspace:
    """One tool's repository, cache folder and restore folder for one data set."""

    repo: Path
    cache: Path
    restore: Path

    def reset(self) -> None:
        """Remove the repository, caches and restored data (before a run's first backup)."""
        for path in (self.repo, self.cache, self.restore):
            shutil.rmtree(path, ignore_errors=True)
        self.cache.mkdir(parents=True)


@dataclass(frozen=True)
class Target:
    """What a backup reads: a raw image or a folder, and the name strongroom files it under."""

    path: Path
    is_image: bool
    source: str


@dataclass
class Tool(ABC):
    name: str

    @abstractmethod
    def env(self, ws: Workspace) -> dict[str, str]: ...

    @abstractmethod
    def init(self, ws: Workspace) -> Command: ...

    @abstractmethod
    def backup(self, ws: Workspace, target: Target, step: Step) -> Command: ...

    @abstractmethod
    def restore(self, ws: Workspace, target: Target, step: Step) -> tuple[Command, Path]:
        """The restore of ``step``'s backup into ``ws.restore``, and where ``target`` lands."""

    @abstractmethod
    def version_argv(self) -> list[str]: ...

    def cmd(self, ws: Workspace, *argv: str, cwd: Path | None = None) -> Command:
        return Command(list(argv), self.env(ws), cwd)

    def key_params(self, ws: Workspace) -> dict[str, int]:
        """The key derivation's parameters where the tool picks them when the repository is
        made (none here: fixed defaults); the report shows them beside the timings."""
        return {}

    def repo_size(self, ws: Workspace) -> int:
        """Bytes of every file in the repository (apparent size)."""
        total = 0
        for root, _dirs, files in os.walk(ws.repo):
            for name in files:
                total += os.lstat(os.path.join(root, name)).st_size
        return total


def _base_env() -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "HOME", "USER", "LOGNAME")
    return {k: os.environ[k] for k in keep if k in os.environ}


def strongroom_executable() -> str:
    """The ``strongroom`` next to this Python (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "strongroom"
    if beside.exists():
        return str(beside)
    found = shutil.which("strongroom")
    if found is None:
        raise SystemExit("strongroom is not installed: run scripts/setup.sh")
    return found


@dataclass
class Strongroom(Tool):
    exe: str = field(default_factory=strongroom_executable)

    def env(self, ws: Workspace) -> dict[str, str]:
        env = _base_env()
        env.update(
            STRONGROOM_VAULT=str(ws.repo),
            STRONGROOM_PASSWORD=PASSWORD,
            XDG_CACHE_HOME=str(ws.cache),
        )
        if "PYTHONPATH" in os.environ:  # a frozen copy of the source, benched while editing
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        return env

    def version_argv(self) -> list[str]:
        return [self.exe, "--help"]

    def repo_size(self, ws: Workspace) -> int:
        """The vault without its ``.reserve`` (preallocated zeros held for a full disk, at most
        8 MiB: no data; the report notes it beside the size)."""
        return super().repo_size(ws) - self.reserve_size(ws)

    @staticmethod
    def reserve_size(ws: Workspace) -> int:
        reserve = ws.repo / ".reserve"
        return reserve.stat().st_size if reserve.exists() else 0

    def init(self, ws: Workspace) -> Command:
        return self.cmd(ws, self.exe, "init")

    def backup(self, ws: Workspace, target: Target, step: Step) -> Command:
        # unchanged image: a plain second backup re-reads and hashes every allocated chunk
        kind = "disk" if target.is_image else "files"
        return self.cmd(
            ws, self.exe, "backup", kind, str(target.path), "--source", target.source, "--json"
        )

    def restore(self, ws: Workspace, target: Target, step: Step) -> tuple[Command, Path]:
        if target.is_image:
            out = ws.restore / "disk.raw"
            argv = ["restore", "disk", "latest", "--source", target.source, "--to", str(out)]
        else:
            out = ws.restore / target.path.relative_to("/")
            argv = ["restore", "files", "latest", "--source", target.source]
            argv += ["--target", str(ws.restore)]
        return self.cmd(ws, self.exe, *argv, "--json"), out


@dataclass
class Restic(Tool):
    def env(self, ws: Workspace) -> dict[str, str]:
        env = _base_env()
        env.update(
            RESTIC_REPOSITORY=str(ws.repo),
            RESTIC_PASSWORD=PASSWORD,
            RESTIC_CACHE_DIR=str(ws.cache),
        )
        return env

    def version_argv(self) -> list[str]:
        return ["restic", "version"]

    def key_params(self, ws: Workspace) -> dict[str, int]:
        """scrypt's N, r and p from the repository's key file (plain JSON).

        ``restic init`` calibrates them to take about half a second on the machine as it is
        at that moment, and every later command derives the key again at that cost: four
        ``init`` on a quiet machine here gave p=7-8 (0.46-0.64 CPU s for ``cat config``), and
        an unchanged backup in the harness took 0.2-1.0 CPU s from one repository to the next.
        A sub-second operation's ratio moves with it, hence the note in the report."""
        for key in sorted((ws.repo / "keys").glob("*")):
            try:
                found = json.loads(key.read_text())
                if found.get("kdf") == "scrypt":
                    return {f"scrypt_{k.lower()}": int(found[k]) for k in ("N", "r", "p")}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
        return {}

    def init(self, ws: Workspace) -> Command:
        return self.cmd(ws, "restic", "init")  # repository v2: compression "auto"

    def backup(self, ws: Workspace, target: Target, step: Step) -> Command:
        force = ["--force"] if target.is_image and step is Step.UNCHANGED else []
        return self.cmd(ws, "restic", "backup", *force, str(target.path))

    def restore(self, ws: Workspace, target: Target, step: Step) -> tuple[Command, Path]:
        # restic 0.14 has no --sparse (0.15 added it): the image comes back fully allocated
        cmd = self.cmd(ws, "restic", "restore", "latest", "--target", str(ws.restore))
        return cmd, ws.restore / target.path.relative_to("/")


BORG14 = Path(os.environ.get("BENCH_OPT", "/opt/strongroom-bench")) / "borg14" / "bin" / "borg"


@dataclass
class Borg(Tool):
    compression: str = "zstd,3"
    exe: str = "borg"  # Debian's borg 1.2; borg 1.4 from PyPI lives in its own venv

    def env(self, ws: Workspace) -> dict[str, str]:
        env = _base_env()
        env.update(
            BORG_PASSPHRASE=PASSWORD,
            BORG_BASE_DIR=str(ws.cache),
            BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
            BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
        )
        return env

    def version_argv(self) -> list[str]:
        return [self.exe, "--version"]

    def init(self, ws: Workspace) -> Command:
        return self.cmd(ws, self.exe, "init", "--encryption", "repokey", str(ws.repo))

    def backup(self, ws: Workspace, target: Target, step: Step) -> Command:
        # borg create re-reads only files whose ctime, size or inode changed; the unchanged
        # image's full re-read needs the files cache off
        extra = ["--files-cache", "disabled"] if target.is_image and step is Step.UNCHANGED else []
        archive = f"{ws.repo}::{step.value}"
        argv = [self.exe, "create", "--compression", self.compression, *extra]
        return self.cmd(ws, *argv, archive, str(target.path))

    def restore(self, ws: Workspace, target: Target, step: Step) -> tuple[Command, Path]:
        sparse = ["--sparse"] if target.is_image else []
        cmd = self.cmd(ws, self.exe, "extract", *sparse, f"{ws.repo}::{step.value}", cwd=ws.restore)
        return cmd, ws.restore / target.path.relative_to("/")


DEFAULT_TOOLS = ("strongroom", "restic", "borg1.2", "borg1.4")


def all_tools() -> list[Tool]:
    """Every tool the harness knows; ``DEFAULT_TOOLS`` run unless ``--tools`` says otherwise."""
    return [
        Strongroom("strongroom"),
        Restic("restic"),
        Borg("borg1.2", compression="zstd,3"),
        Borg("borg1.4", compression="zstd,3", exe=str(BORG14)),
        Borg("borg1.2-lz4", compression="lz4"),
        Borg("borg1.4-lz4", compression="lz4", exe=str(BORG14)),
    ]
