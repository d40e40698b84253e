"""The audit log's writer: rows of allowed requests in batches, refusals at once.

A SQLite commit per request cost more than the rest of a small request's path, so a
background thread writes rows in one transaction per batch: at most :data:`FLUSH_S` seconds
after they were queued, and at shutdown.  The queue is bounded: when the catalog cannot keep
up, requests wait for room (back pressure), and no row is ever dropped.

Refused requests (any status of 400 or more) are written before their response is sent:
:meth:`AuditWriter.write_now` queues the row and waits until its batch is committed, so a
probe or an attack is in the log even if the server dies a moment later, and rows stay in
the order they were queued.  An allowed request's row can be lost only with the process
(``kill -9``, a crash or power cut within the last second), like any row under
``synchronous=NORMAL``.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import field

from strongroom.records import dataclass
from strongroom.server.catalog import AuditEntry, Catalog
from strongroom.server.catalog_db import CatalogError

_log = logging.getLogger("strongroom.server")
FLUSH_S = 1.0
"""The longest an allowed request's row waits before it is committed."""
MAX_QUEUED = 10_000
_BATCH = 1000


@dataclass
class _Row:
    entry: AuditEntry | None
    """None: a marker that :meth:`AuditWriter.flush` waits for."""
    done: threading.Event | None = field(default=None)


class AuditWriter:
    """Writes audit rows to the catalog from one background thread."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._queue: queue.Queue[_Row | None] = queue.Queue(MAX_QUEUED)
        self._thread = threading.Thread(target=self._loop, name="audit-writer", daemon=True)
        self._thread.start()

    def write(self, entry: AuditEntry) -> bool:
        """Queue a row without waiting; False if the queue is full (call :meth:`wait_write`)."""
        try:
            self._queue.put_nowait(_Row(entry))
        except queue.Full:
            return False
        return True

    def wait_write(self, entry: AuditEntry) -> None:
        """Queue a row, waiting for room."""
        self._queue.put(_Row(entry))

    def write_now(self, entry: AuditEntry) -> None:
        """Queue a row and return once it (and every row before it) is committed."""
        done = threading.Event()
        self._queue.put(_Row(entry, done))
        done.wait()

    def flush(self) -> None:
        """Return once every row queued so far is committed."""
        done = threading.Event()
        self._queue.put(_Row(None, done))
        done.wait()

    def close(self) -> None:
        """Commit what is queued and stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        stop = False
        while not stop:
            rows: list[_Row] = []
            try:
                first = self._queue.get(timeout=FLUSH_S)
            except queue.Empty:
                continue
            if first is None:
                break
            rows.append(first)
            while len(rows) < _BATCH:  # whatever else is queued now joins the batch
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                rows.append(more)
            self._commit(rows)

    def _commit(self, rows: list[_Row]) -> None:
        try:
            self._catalog.audit_many([r.entry for r in rows if r.entry is not None])
        except CatalogError as exc:  # keep serving; the operator sees why rows are missing
            _log.error("cannot write %d audit rows: %s", len(rows), exc)
        finally:
            for r in rows:
                if r.done is not None:
                    r.done.set()
