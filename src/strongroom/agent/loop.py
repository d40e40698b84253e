"""``strongroom agent run``: ask the server for work, run it, report, and again.

Network errors and server restarts are waited out with exponential backoff (1 s up to a
minute); a result that cannot be delivered is retried until the server takes or refuses it.
One job at a time, and a lock file per item: two agent processes on one machine never back
up the same item at once (the server also never hands out a second job of an item).
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from strongroom.agent.client import AgentClient
from strongroom.agent.config import AgentConfig, AgentError, load_passphrase
from strongroom.agent.imagework import backup_image_job
from strongroom.agent.work import (
    JobCancelled,
    Outcome,
    Reporter,
    backup_files_job,
    count_files,
    open_served_vault,
    retention_job,
)
from strongroom.errors import AccessDenied, StorageError, StrongroomError
from strongroom.storage.http import CA_FILE_ENV

MAX_BACKOFF_S = 60.0
NO_MAINTENANCE_TOKEN = (
    "this agent holds no maintenance token: run `strongroom agent add-token --role"
    " maintenance --token-file F` on it (a backup token cannot prune)"
)


def say(text: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} {text}", file=sys.stderr, flush=True)


class Backoff:
    def __init__(self, first: float = 1.0, most: float = MAX_BACKOFF_S) -> None:
        self.first, self.most, self.delay = first, most, first

    def wait(self, stop: threading.Event) -> None:
        stop.wait(self.delay)
        self.delay = min(self.delay * 2, self.most)

    def reset(self) -> None:
        self.delay = self.first


@contextmanager
def item_lock(folder: Path, item: str) -> Iterator[bool]:
    """Hold the item's lock file; yields False if another process holds it."""
    locks = folder / "locks"
    locks.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(locks / f"{item}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


class Agent:
    def __init__(
        self, folder: Path, *, wait: float = 30.0, stop: threading.Event | None = None
    ) -> None:
        self.folder = folder
        self.config = AgentConfig.load(folder)
        self.passphrase = load_passphrase(folder)
        if self.config.ca_file:
            os.environ.setdefault(CA_FILE_ENV, self.config.ca_file)
        self.client = AgentClient(self.config.server, self.config.token, wait=wait)
        self.stop = stop or threading.Event()

    def run(self, once: bool = False) -> None:
        say(f"agent {self.config.machine} polling {self.config.server}")
        from strongroom.agent.restorework import Relay

        # the dashboard's browse/download/restore requests, answered on their own thread
        relay = Relay(
            self.config.server,
            self.config.token,
            self.passphrase,
            self.config.machine,
            self.client,
            threading.Event(),
            say,
            wait=max(self.client.wait, 1.0),
        )
        relay.start()
        try:
            self._poll(once)
        finally:
            relay.stop.set()
            relay.close()

    def _poll(self, once: bool) -> None:
        backoff = Backoff()
        while not self.stop.is_set():
            try:
                work = self.client.next_job()
            except AccessDenied as exc:
                raise AgentError(f"the server refuses this agent: {exc}") from None
            except StorageError as exc:
                say(f"server unreachable, retrying in {backoff.delay:g}s: {exc}")
                backoff.wait(self.stop)
                continue
            backoff.reset()
            if work is not None:
                self.handle(work)
                if once:
                    return

    def handle(self, work: dict[str, Any]) -> None:
        job, item = int(work["job"]), str(work["item"])
        say(f"job {job}: {work['kind']} of {item} started")
        with item_lock(self.folder, item) as locked:
            if not locked:
                outcome = Outcome("failed", reason="another agent process runs this item")
            else:
                outcome = self._run(work)
        say(f"job {job}: {outcome.state}" + (f": {outcome.reason}" if outcome.reason else ""))
        self.deliver(job, outcome)

    def _run(self, work: dict[str, Any]) -> Outcome:
        job = int(work["job"])
        lines: list[str] = []
        targets = [str(t) for t in work.get("targets", [])]
        total = count_files(targets) if work["kind"] == "backup" else 0
        token = self.config.token
        if work["kind"] == "prune":  # only prune needs (and uses) the maintenance token
            if self.config.maintenance_token is None:
                return Outcome("failed", reason=NO_MAINTENANCE_TOKEN)
            token = self.config.maintenance_token
        try:
            with Reporter(self.client, job, total) as reporter:
                v = open_served_vault(
                    self.config.server,
                    str(work["vault"]),
                    token,
                    self.passphrase,
                    lines.append,
                )
                try:
                    outcome = self._dispatch(v, work, reporter)
                finally:
                    v.backend.close()
        except JobCancelled:
            outcome = Outcome("cancelled", reason="cancelled while running; nothing committed")
        except KeyboardInterrupt:
            self._report_once(job, Outcome("failed", reason="the agent was stopped"))
            raise
        except (StrongroomError, OSError) as exc:
            outcome = Outcome("failed", reason=" ".join(str(exc).split())[:500])
        outcome.log[:0] = lines
        return outcome

    def _dispatch(self, v: Any, work: dict[str, Any], reporter: Reporter) -> Outcome:
        if work["kind"] == "retention":
            return retention_job(v, work)
        if work["kind"] == "prune":
            from strongroom.agent.prunework import prune_job

            return prune_job(v, work, reporter)
        if work["kind"] == "restore":  # the dashboard's (normally handed over by the relay)
            from strongroom.agent.restorework import restore_job

            return restore_job(v, work, reporter, self.config.machine)
        if work.get("item_kind") in ("vm", "disk"):
            return backup_image_job(v, work, reporter)
        if work.get("item_kind") != "files":
            return Outcome(
                "failed",
                reason=f"{work.get('item_kind')} jobs are not supported "
                "by this agent yet (files only)",
            )
        return backup_files_job(v, work, reporter, self.folder / "cache")

    def deliver(self, job: int, outcome: Outcome) -> None:
        """Report the result until the server takes it (or refuses it for good)."""
        backoff = Backoff()
        while True:
            try:
                self.client.result(job, outcome.to_dict())
                return
            except AccessDenied as exc:
                raise AgentError(f"the server refuses this agent: {exc}") from None
            except StorageError as exc:
                if not _transient(exc):
                    say(f"job {job}: the server refused the result: {exc}")
                    return
                if self.stop.is_set():
                    return
                say(f"job {job}: result not delivered, retrying in {backoff.delay:g}s: {exc}")
                backoff.wait(self.stop)

    def _report_once(self, job: int, outcome: Outcome) -> None:
        with suppress(StorageError):
            self.client.result(job, outcome.to_dict())


def _transient(exc: StorageError) -> bool:
    from strongroom.errors import TransientStorageError

    return isinstance(exc, TransientStorageError)


def register(
    server: str,
    enrol_token: str,
    name: str,
    folder: Path,
    passphrase: str,
    ca_file: str | None = None,
) -> AgentConfig:
    client = AgentClient(server, enrol_token, wait=0)
    try:
        doc = client.register(name)
    finally:
        client.close()
    config = AgentConfig(server, str(doc["machine"]), str(doc["token"]), ca_file)
    config.save(folder, passphrase)
    return config
