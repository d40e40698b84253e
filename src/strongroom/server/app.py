"""The HTTP API (FastAPI on uvicorn): the data plane of every vault, tokens and the audit log.

Every request is authenticated, authorized and written to the audit log, whatever its outcome.
Blocking work (storage, SQLite, hashing) runs on the thread pool; only reading the request
body happens on the event loop, under a size limit and an idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from strongroom.errors import ObjectLocked, ObjectNotFound, StorageError, TransientStorageError
from strongroom.records import dataclass
from strongroom.server import upload
from strongroom.server.auditlog import AuditWriter
from strongroom.server.auth import ApiError, authenticate, bearer, new_token, require_role
from strongroom.server.catalog import AuditEntry, Catalog, TokenRow
from strongroom.server.gateway import VaultGateway
from strongroom.server.vaults import VaultRegistry
from strongroom.storage.backend import ObjectInfo
from strongroom.storage.http import ERROR_KIND_HEADER

MiB = 1024 * 1024
AUTH_CACHE_S = 5.0
"""How long a verified token is trusted without asking the catalog again.  Revoking through
this server takes effect at once (it empties the cache); a token revoked by another process
on the same catalog works for up to this long."""
_AUTH_CACHE_MAX = 10_000


@dataclass
class Limits:
    max_upload: int = 256 * MiB
    body_idle_timeout: float = 30.0
    """Seconds an upload may send nothing before it is cut off (a body that never ends)."""
    body_timeout: float = 900.0
    """Seconds a whole upload may take."""
    upload_budget: int = 256 * MiB
    """Bytes of uploads held in memory at once (declared sizes): more waits, so many clients
    never hold all their packs in the server's memory together."""


@dataclass
class Call:
    """What the audit log records of one request."""

    request: Request
    action: str
    vault: str | None = None
    obj: str | None = None
    token: TokenRow | None = None
    claimed: str | None = None
    """The id a refused token claimed to have."""
    detail: str = ""


class Server:
    def __init__(self, data_dir: Path, limits: Limits | None = None) -> None:
        self.catalog = Catalog(data_dir)
        self.vaults = VaultRegistry(self.catalog)
        self.limits = limits or Limits()
        self._budget = asyncio.Condition()
        self._in_flight = 0
        self.peak_in_flight = 0
        """The most bytes of upload budget ever held at once (tests and benchmarks read it)."""
        self.audit = AuditWriter(self.catalog)
        self._verified: dict[bytes, tuple[TokenRow, float]] = {}
        """Tokens verified lately (SHA-256 of the whole token → its row, when): a token is
        looked up in the catalog at most every AUTH_CACHE_S seconds, not on every request."""
        self.held = upload.Held()
        """Bytes of request bodies in memory now, and the peak (tests read it)."""

    # --- the frame every route runs in -----------------------------------------------------

    async def run(self, call: Call, work: Callable[[], Awaitable[Response]]) -> Response:
        try:
            response = await work()
        except ApiError as exc:
            response = _error(exc.status, exc.reason, exc.kind)
            call.detail, call.claimed = exc.reason, exc.token_id
        except ObjectNotFound:
            response = _error(404, f"{call.obj or 'object'} not found", "not-found")
        except ObjectLocked as exc:  # the storage's own retention (S3 Object Lock) holds it
            response = _error(423, str(exc), "locked")
            call.detail = str(exc)
        except TransientStorageError as exc:
            response = _error(503, f"storage unavailable: {exc}", "transient")
            call.detail = str(exc)
        except StorageError as exc:
            response = _error(500, f"storage error: {exc}", "permanent")
            call.detail = str(exc)
        if response.status_code in (408, 413):
            response.headers["Connection"] = "close"  # the rest of the body is not read
        entry = self._entry(call, response.status_code)
        if response.status_code >= 400:  # a refusal is in the log before its answer is sent
            await run_in_threadpool(self.audit.write_now, entry)
        elif not self.audit.write(entry):
            await run_in_threadpool(self.audit.wait_write, entry)  # the queue is full: wait
        return response

    def _entry(self, call: Call, status: int) -> AuditEntry:
        req, token = call.request, call.token
        return AuditEntry(
            time=time.time(),
            token=token.id if token else call.claimed,
            role=token.role if token else None,
            client=req.client.host if req.client else None,
            method=req.method,
            vault=call.vault,
            action=call.action,
            target=call.obj,
            status=status,
            detail=call.detail,
        )

    async def auth(self, call: Call) -> TokenRow:
        """The request's token, verified against the catalog at most every few seconds."""
        token = bearer(call.request.headers.get("authorization"))
        now = time.monotonic()
        key = hashlib.sha256(token.encode()).digest()  # no secret kept in a long-lived dict
        hit = self._verified.get(key)
        if hit is not None and now - hit[1] < AUTH_CACHE_S and not _expired(hit[0]):
            call.token = hit[0]
            return hit[0]
        row = await run_in_threadpool(authenticate, self.catalog, token)
        if len(self._verified) >= _AUTH_CACHE_MAX:
            self._verified.clear()
        self._verified[key] = (row, now)
        call.token = row
        return row

    def forget_tokens(self) -> None:
        """Drop verified tokens (a revocation takes effect at the next request)."""
        self._verified.clear()

    def close(self) -> None:
        self.audit.close()
        self.vaults.close()
        self.catalog.close()

    async def gateway(self, call: Call, *, create: bool = False) -> VaultGateway | None:
        token = call.token
        assert token is not None
        name = call.vault or ""
        return await run_in_threadpool(self.vaults.gateway, name, token, create)

    @contextlib.asynccontextmanager
    async def upload_slot(self, request: Request, most: int) -> AsyncIterator[None]:
        """Hold the upload's share of the memory budget (its declared size, at most ``most``
        bytes) while it is read and stored; more waits, before its body is read."""
        declared = request.headers.get("content-length", "")
        size = int(declared) if declared.isdigit() else self.limits.max_upload
        need = min(size, most, self.limits.max_upload, self.limits.upload_budget)
        async with self._budget:
            await self._budget.wait_for(lambda: self._in_flight + need <= self.limits.upload_budget)
            self._in_flight += need
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            yield
        finally:
            async with self._budget:
                self._in_flight -= need
                self._budget.notify_all()

    async def _receive(self, request: Request, sink: upload.Sink, limit: int | None = None) -> int:
        lim = self.limits
        return await upload.receive(
            request,
            sink,
            limit=min(limit or lim.max_upload, lim.max_upload),
            idle_timeout=lim.body_idle_timeout,
            total_timeout=lim.body_timeout,
        )

    async def body(self, request: Request, limit: int | None = None) -> bytes:
        """The request body, refused when larger than the limit (``limit`` bytes, if lower
        than the server's) or slower than the timeouts."""
        sink = upload.MemorySink(self.held)
        try:
            await self._receive(request, sink, limit)
            return bytes(sink.buf)
        finally:
            sink.release()

    async def put(
        self,
        request: Request,
        gw: VaultGateway,
        token: TokenRow,
        name: str,
        sources: tuple[str | None, list[str]],
    ) -> tuple[bool, int]:
        """Receive and store one object: (created, size).  A pack goes straight to the
        backend's stream where it has one; anything else is gathered in memory first.
        ``sources``: a point's source, and the sources a repacked object serves."""
        source, named = sources
        kind = await run_in_threadpool(gw.check_put, token, name, source, named)
        stream = await run_in_threadpool(gw.open_stream, kind)
        if stream is None:
            async with self.upload_slot(request, self.limits.max_upload):
                sink = upload.MemorySink(self.held)
                try:
                    size = await self._receive(request, sink)
                    whole = gw.put
                    created = await run_in_threadpool(whole, token, name, sink.buf, source, named)
                finally:
                    sink.release()
                return created, size
        async with self.upload_slot(request, upload.BATCH):
            streamed = upload.StreamSink(stream, self.held)
            try:
                size = await self._receive(request, streamed)
                digest = await streamed.finish()
                streamed_put = gw.put_streamed
                created = await run_in_threadpool(streamed_put, token, name, stream, digest, named)
            finally:
                stream.abort()
                streamed.close()
            return created, size


def _expired(row: TokenRow) -> bool:
    return row.expires is not None and time.time() >= row.expires


def _error(status: int, reason: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": reason, "kind": kind}, status, {ERROR_KIND_HEADER: kind})


def object_info(info: ObjectInfo) -> dict[str, Any]:
    return {"name": info.name, "size": info.size, "mtime": info.mtime}


def create_app(server: Server) -> FastAPI:
    app = FastAPI(title="strongroom vault server", version="1")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(400, f"invalid request: {where}: {first.get('msg', 'invalid')}", "refused")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail), "refused")

    @app.get("/v1/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    from strongroom.server import routes

    routes.add_object_routes(app, server)
    from strongroom.server import batchread

    batchread.add_routes(app, server)
    routes.add_admin_routes(app, server)
    routes.add_approval_routes(app, server)
    from strongroom.server.control import routes as control_routes

    plane = control_routes.install(app, server)
    from strongroom.server.web import routes as web_routes

    web_routes.install(app, server, plane)
    return app


__all__ = ["Call", "Limits", "Server", "create_app", "new_token", "require_role"]
