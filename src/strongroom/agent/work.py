"""Running one job in the agent: a files backup or a retention (tombstones the server chose),
with progress reported while it runs and cancellation at the next progress step."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strongroom.agent.client import AgentClient
from strongroom.errors import StorageError, StrongroomError
from strongroom.records import dataclass

if TYPE_CHECKING:
    from strongroom.vault import Vault

PROGRESS_ENV = "STRONGROOM_AGENT_PROGRESS"
_COUNT_LIMIT = 1_000_000


class JobCancelled(StrongroomError):
    """The server asked for the running job to stop."""


@dataclass
class Outcome:
    state: str
    point: str | None = None
    bytes_read: int = 0
    bytes_added: int = 0
    files: int = 0
    reason: str | None = None
    log: list[str] = field(default_factory=list)
    logical: int = 0
    """The point's logical size (files' bytes, disks' data): the server's dedup ratio."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def progress_interval() -> float:
    try:
        return max(0.1, float(os.environ.get(PROGRESS_ENV, "2")))
    except ValueError:
        return 2.0


class Reporter:
    """Posts progress every few seconds from its own thread; the engine's progress callback
    only stores numbers (and raises :class:`JobCancelled` once the server said so)."""

    def __init__(self, client: AgentClient, job: int, total_files: int) -> None:
        self.client, self.job, self.total = client, job, total_files
        self.files = self.bytes = 0
        self.total_bytes = 0
        """Set by image jobs: percent and ETA then follow the bytes, not the files."""
        self.started = time.monotonic()
        self.cancelled = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"job-{job}", daemon=True)

    def __enter__(self) -> Reporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def update(self, files: int, nbytes: int, current: str) -> None:
        self.files, self.bytes = files, nbytes
        if self.cancelled.is_set():
            raise JobCancelled("cancelled by the server")

    def update_bytes(self, done: int, total: int) -> None:
        self.bytes, self.total_bytes = done, total
        if self.cancelled.is_set():
            raise JobCancelled("cancelled by the server")

    def snapshot(self) -> dict[str, Any]:
        percent = eta = None
        done, total = self.files, self.total
        if self.total_bytes:
            done, total = self.bytes, self.total_bytes
        if total:
            percent = min(100.0, 100.0 * done / total)
            elapsed = time.monotonic() - self.started
            if done:
                eta = elapsed * (total - min(done, total)) / done
        return {"bytes_read": self.bytes, "files": self.files, "percent": percent, "eta": eta}

    def _loop(self) -> None:
        while not self._done.wait(progress_interval()):
            try:
                if self.client.progress(self.job, self.snapshot()):
                    self.cancelled.set()
            except StorageError:
                pass  # the server is away: the result is delivered later


def count_files(targets: list[str]) -> int:
    """How many files the targets hold (for percent and ETA; bounded)."""
    n = 0
    for target in targets:
        if os.path.isfile(target):
            n += 1
            continue
        for _, _, files in os.walk(target):
            n += len(files)
            if n > _COUNT_LIMIT:
                return n
    return n


def open_served_vault(
    server: str, vault: str, token: str, passphrase: str, warn: Callable[[str], None]
) -> Vault:
    from strongroom.storage.http import HttpBackend, ServerAddress
    from strongroom.vault import Vault
    from strongroom.vault.keys import SlotOpener

    backend = HttpBackend(ServerAddress.parse(server), vault, token)
    try:
        opener = SlotOpener(backend, passphrase)
        opener.prepare()
        return Vault.open(backend, opener, strict=False, warn=warn)
    except BaseException:
        backend.close()
        raise


def backup_files_job(v: Vault, work: dict[str, Any], reporter: Reporter, cache: Path) -> Outcome:
    from strongroom.files import BackupOptions, backup_files

    opts = BackupOptions(
        paths=list(work["targets"]),
        source=str(work["source"]),
        excludes=list(work.get("excludes", [])),
        cache_root=cache,
    )
    s = backup_files(v, opts, reporter.update)
    lines = [f"{path}: {reason}" for path, reason in s.errors] + list(s.warnings)
    lines.append(
        f"files: {s.files_new} new, {s.files_changed} changed, {s.files_unchanged} unchanged;"
        f" read {s.bytes_read} bytes, added {s.bytes_added} in {s.duration:.1f}s;"
        f" point {s.point_id}"
    )
    return Outcome(
        "partial" if s.errors else "succeeded",
        s.point_id,
        s.bytes_read,
        s.bytes_added,
        s.files,
        "some files could not be read" if s.errors else None,
        lines,
        s.logical_bytes,
    )


def retention_job(v: Vault, work: dict[str, Any]) -> Outcome:
    """Tombstone the points the server's retention chose (and granted this token)."""
    from strongroom.errors import ImmutablePoint
    from strongroom.storage.reserve import FORGET_KEEPS
    from strongroom.vault.forget import soft_delete

    wanted = [str(p) for p in work.get("points", [])]
    lines: list[str] = []
    done = 0
    with v.lock(use_reserve=FORGET_KEEPS):
        v.refresh_config()
        points = {p.point_id: p for p in v.points()}
        for pid in wanted:
            point = points.get(pid)
            if point is None:
                lines.append(f"{pid[:12]}: not found or forgotten already")
                continue
            if point.manifest.source != work["source"]:
                lines.append(f"{pid[:12]}: belongs to {point.manifest.source!r}, kept")
                continue
            try:
                soft_delete(v, point, str(work.get("reason", "retention policy")))
                done += 1
            except ImmutablePoint as exc:
                lines.append(str(exc))
    lines.append(f"forgot {done} of {len(wanted)} point(s)")
    return Outcome("succeeded", log=lines)
