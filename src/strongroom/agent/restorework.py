"""The agent's side of restores from the dashboard (``docs/server.md``, "Restores from the
browser").

The server holds no vault key, so it cannot read a point: it hands the browser's requests to
an agent that holds the passphrase.  A second thread of the agent long-polls
``GET /v1/agent/relay`` for them (so a browse is answered while a backup runs) and runs each
on a small pool:

- ``instants``: the instant recoveries this host runs from the item's vault (``instant
  list``), as JSON;
- ``browse``: one folder of a point (files, or an image point's /DISK/VOLUME/PATH) as JSON;
- ``fetch``: one file's bytes, or a folder as a zip or tar, produced incrementally and
  streamed to the server in one chunked POST (memory bounded by one chunk);
- ``settings``: the vault's config with new soft-delete or immutability days, signed
  (``agent/settingswork.py``);
- ``restore``: a restore job (files to a path, a disk, a VM as new or in place, an instant
  recovery as new or in place, and its finalize or abort) with progress and result
  through the control plane's job routes, as a backup.

The agent opens no port: every byte goes over its own authenticated requests.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from strongroom.agent.archive import Upload, send_archive, send_file
from strongroom.agent.settingswork import signed_settings
from strongroom.agent.work import JobCancelled, Outcome, Reporter, open_served_vault
from strongroom.errors import StorageError, StrongroomError
from strongroom.storage.http import CA_FILE_ENV, HttpClient, ServerAddress, raise_for

if TYPE_CHECKING:
    from strongroom.agent.client import AgentClient
    from strongroom.files.tree import TreeReader
    from strongroom.vault import RecoveryPoint, Vault

RELAY_WORKERS = 4
IMAGE_KINDS = ("vm", "disk")
RESTORE_WHATS = ("files", "disk", "vm", "instant", "instant-finalize", "instant-abort")


class RelayError(StrongroomError):
    """A relayed request cannot be done (bad path, wrong point, unknown kind)."""


class Relay:
    """The agent's relay thread: poll, run each request on the pool, answer."""

    def __init__(
        self,
        server: str,
        token: str,
        passphrase: str,
        machine: str,
        jobs: AgentClient,
        stop: threading.Event,
        say: Callable[[str], None],
        *,
        wait: float = 30.0,
    ) -> None:
        self.address = ServerAddress.parse(server)
        self.server, self.token, self.passphrase = server, token, passphrase
        self.machine, self.jobs, self.stop, self.say, self.wait = machine, jobs, stop, say, wait
        self.http = HttpClient(self.address, token, timeout=wait + 30)
        self.pool = ThreadPoolExecutor(RELAY_WORKERS, thread_name_prefix="relay")
        self.thread = threading.Thread(target=self._loop, name="relay", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                doc = self._poll()
            except StorageError as exc:
                self.say(f"relay: server unreachable: {exc}")
                self.stop.wait(5.0)
                continue
            if doc is not None:
                self.pool.submit(self.handle, doc)

    def _poll(self) -> dict[str, Any] | None:
        reply = self.http.request("GET", f"/v1/agent/relay?wait={self.wait:g}")
        raise_for(reply, f"{self.address.url()}: relay poll")
        if reply.status == 204 or not reply.body:
            return None
        doc = reply.json()
        return doc if isinstance(doc, dict) else None

    def handle(self, doc: dict[str, Any]) -> None:
        kind, rid = str(doc.get("kind")), str(doc.get("id"))
        self.say(f"relay {rid[:8]}: {kind} of {doc.get('item')}")
        if kind == "restore":
            self._restore(doc)
            return
        try:
            if kind == "instants":  # no vault needed: the host's instant recoveries
                from strongroom.agent.restorevm import instant_rows

                location = f"{self.server.rstrip('/')}/{doc['vault']}"
                self._answer(rid, json.dumps(instant_rows(location)).encode())
                return
            v = self._vault(doc)
            try:
                with v.read_lock():
                    if kind == "browse":
                        self._answer(rid, json.dumps(browse(v, doc)).encode())
                    elif kind == "fetch":
                        self._stream(rid, v, doc)
                    elif kind == "settings":  # the dashboard's settings form: sign only
                        self._answer(rid, signed_settings(v, doc))
                    else:
                        raise RelayError(f"unknown relay request {kind!r}")
            finally:
                v.backend.close()
        except (StrongroomError, OSError) as exc:
            self._fail(rid, " ".join(str(exc).split())[:500])

    def _vault(self, doc: dict[str, Any]) -> Vault:
        return open_served_vault(
            self.server, str(doc["vault"]), self.token, self.passphrase, lambda _: None
        )

    def _answer(self, rid: str, body: bytes) -> None:
        up = self.upload(rid, "application/json", "")
        up.write(body)
        up.finish()

    def _stream(self, rid: str, v: Vault, doc: dict[str, Any]) -> None:
        p = point_of(v, doc)
        fmt = str(doc.get("format", "file"))
        found, where, trees = lookup(v, p, str(doc.get("path", "/")))
        name = os.path.basename(where.rstrip(b"/")).decode(errors="replace") or "point"
        if fmt == "file":
            up = self.upload(rid, "application/octet-stream", name)
            try:
                send_file(v, found, up)
            except BaseException:
                up.abort()
                raise
            up.finish()
            return
        if fmt not in ("zip", "tar"):
            raise RelayError(f"format must be file, zip or tar, not {fmt!r}")
        mime = "application/zip" if fmt == "zip" else "application/x-tar"
        up = self.upload(rid, mime, f"{name}.{fmt}")
        try:
            send_archive(v, trees, found, where, fmt, up)
        except BaseException:
            up.abort()  # the browser sees a broken download, never a short "complete" one
            raise
        up.finish()

    def upload(self, rid: str, mime: str, name: str) -> Upload:
        return Upload(
            _connect(self.address),
            self.address.prefix + f"/v1/agent/relay/{rid}/data",
            {"Authorization": f"Bearer {self.token}", "Content-Type": mime, "X-Name": name},
        )

    def _fail(self, rid: str, reason: str) -> None:
        self.say(f"relay {rid[:8]}: failed: {reason}")
        body = json.dumps({"reason": reason}).encode()
        try:
            self.http.request("POST", f"/v1/agent/relay/{rid}/fail", body)
        except StorageError as exc:
            self.say(f"relay {rid[:8]}: cannot report the failure: {exc}")

    def _restore(self, doc: dict[str, Any]) -> None:
        job = int(doc["job"])
        try:
            if self.jobs.progress(job, {}):  # cancelled, or no longer this agent's
                raise JobCancelled("cancelled before it started")
            with Reporter(self.jobs, job, 0) as reporter:
                v = self._vault(doc)
                try:
                    outcome = restore_job(v, doc, reporter, self.machine, self)
                finally:
                    v.backend.close()
        except JobCancelled as exc:
            outcome = Outcome("cancelled", reason=str(exc))
        except (StrongroomError, OSError) as exc:
            outcome = Outcome("failed", reason=" ".join(str(exc).split())[:500])
        self.say(f"job {job}: restore {outcome.state}")
        try:
            self.jobs.result(job, outcome.to_dict())
        except StorageError as exc:
            self.say(f"job {job}: result not delivered: {exc}")


def _connect(a: ServerAddress) -> http.client.HTTPConnection:
    if a.scheme == "https":
        context = ssl.create_default_context(cafile=os.environ.get(CA_FILE_ENV) or None)
        return http.client.HTTPSConnection(a.host, a.port, timeout=120, context=context)
    return http.client.HTTPConnection(a.host, a.port, timeout=120)


# --- reading points ------------------------------------------------------------------------


def point_of(v: Vault, doc: dict[str, Any]) -> RecoveryPoint:
    """The point the request names, which must belong to the item's source."""
    p = v.resolve_point(str(doc["point"]))
    if p.manifest.source != doc.get("source"):
        raise RelayError(f"point {p.short_id} is not one of item {doc.get('item')}'s points")
    return p


def lookup(v: Vault, p: RecoveryPoint, path: str) -> tuple[Any, bytes, TreeReader]:
    """(node, its path, the tree reader it came from) of ``path`` in ``p``: the files
    engine's, or the guest filesystems' of an image point (/DISK/VOLUME/PATH)."""
    from strongroom.files.tree import TreeReader, root_node, split_path

    where = b"/" + b"/".join(split_path(path))
    if p.manifest.kind in IMAGE_KINDS:
        from strongroom.guestfiles.tree import GuestPoint, GuestTree

        guest = GuestTree(GuestPoint(v, p))
        trees: TreeReader = guest
        node = guest.lookup(guest.root(), where)
    else:
        trees = TreeReader(v)
        node = trees.lookup(root_node(p), where)
    if node is None:
        raise RelayError(f"{path}: not in recovery point {p.short_id}")
    return node, where, trees


def browse(v: Vault, doc: dict[str, Any]) -> dict[str, Any]:
    """One folder of the point: its entries (name, type, size, mode, mtime...)."""
    from strongroom.files import node_doc
    from strongroom.files.nodes import DIR

    p = point_of(v, doc)
    found, where, trees = lookup(v, p, str(doc.get("path", "/")))
    out: dict[str, Any] = {"point": p.point_id, "kind": p.manifest.kind, "path": where.decode()}
    if found.kind != DIR:
        out["entries"] = [node_doc(where, found)]
        return out
    kids = trees.children(found)
    image = p.manifest.kind in IMAGE_KINDS
    volumes = (
        _volume_facts(v, p, where) if image and where.count(b"/") == 1 and where != b"/" else {}
    )
    entries = []
    for kid in kids:
        entry = node_doc(os.path.join(where, kid.name), kid)
        entry["name"] = os.fsdecode(kid.name)
        entry.update(volumes.get(entry["name"], {}))
        entries.append(entry)
    out["entries"] = entries
    return out


def _volume_facts(v: Vault, p: RecoveryPoint, where: bytes) -> dict[str, dict[str, Any]]:
    """A disk's volumes: filesystem type, label, size (the ``ls /DISK`` columns)."""
    from strongroom.guestfiles.tree import GuestPoint

    guest = GuestPoint(v, p)
    disk = where.decode().strip("/")
    return {
        vol.name: {"fstype": vol.kind, "label": vol.label, "size": vol.size, "error": vol.error}
        for vol in guest.volumes(disk)
    }


# --- restore jobs --------------------------------------------------------------------------


class _Progress:
    """The engines' progress callbacks into the job's reporter (bytes; percent of a disk)."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def files(self, files: int, nbytes: int, current: str) -> None:
        self.reporter.update(files, nbytes, current)

    def image(self, label: str, done: int, total: int) -> None:
        if total:
            self.reporter.total = total
        self.reporter.update(done, done, label)


def restore_job(
    v: Vault, work: dict[str, Any], reporter: Reporter, machine: str, relay: Relay | None = None
) -> Outcome:
    """Run the restore the dashboard asked for: the CLI's code path for each kind."""
    if work.get("agent") not in (None, machine):
        raise RelayError(f"this restore is for agent {work.get('agent')!r}, not {machine!r}")
    what = str(work.get("what"))
    if what not in RESTORE_WHATS:
        raise RelayError(f"restore kind must be one of {', '.join(RESTORE_WHATS)}")
    p = point_of(v, work)
    progress = _Progress(reporter)
    if what == "files":
        return _restore_files(v, p, work, progress)
    from strongroom.agent import restorevm

    return restorevm.run(v, p, work, progress.image, relay)


def _restore_files(
    v: Vault, p: RecoveryPoint, work: dict[str, Any], progress: _Progress
) -> Outcome:
    from strongroom.files import RestoreOptions, restore_files

    opts = RestoreOptions(
        str(work["target"]),
        [str(s) for s in work.get("paths", [])],
        str(work.get("on_conflict", "overwrite")),
        bool(work.get("dry_run", False)),
        bool(work.get("verify", False)),
    )
    if p.manifest.kind in IMAGE_KINDS:
        from strongroom.guestfiles.restore import restore_guest_files
        from strongroom.guestfiles.tree import GuestPoint

        s = restore_guest_files(GuestPoint(v, p), opts)
    else:
        progress.reporter.total = count_selected(v, p, list(opts.selectors))
        s = restore_files(v, p, opts, progress.files)
    lines = [f"{path}: {reason}" for path, reason in [*s.warnings, *s.errors]]
    lines += [f"skipped {path}" for path in s.skipped[:200]]
    lines.append(
        f"restored {s.files} files, {s.dirs} folders, {s.bytes_written} bytes from"
        f" {p.short_id} to {s.target}" + (f", {len(s.skipped)} skipped" if s.skipped else "")
    )
    return Outcome(
        "partial" if s.errors else "succeeded",
        bytes_read=s.bytes_written,
        files=s.files,
        reason="some files could not be restored" if s.errors else None,
        log=lines,
    )


def count_selected(v: Vault, p: RecoveryPoint, selectors: list[str]) -> int:
    """How many files the selection holds (for the job's percent); 0 (no percent) when a
    selector is a glob or the count passes a million."""
    from strongroom.files.nodes import FILE
    from strongroom.files.patterns import has_magic
    from strongroom.files.tree import TreeReader, root_node, split_path

    if any(has_magic(sel) for sel in selectors):
        return 0
    trees, n = TreeReader(v), 0
    with v.read_lock():
        for sel in selectors or ["/"]:
            where = b"/" + b"/".join(split_path(sel))
            node = trees.lookup(root_node(p), where)
            for _, found in trees.walk(node, where) if node is not None else ():
                n += found.kind == FILE
                if n > 1_000_000:
                    return 0
    return n
