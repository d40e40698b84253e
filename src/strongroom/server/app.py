"""The HTTP API (FastAPI on uvicorn): the data plane of every vault, tokens and the audit log.

Every request is authenticated, authorized and written to the audit log, whatever its outcome.
Blocking work (storage, SQLite, hashing) runs on the thread pool; only reading the request
body happens on the event loop, under a size limit and an idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from strongroom.errors import ObjectLocked, ObjectNotFound, StorageError, TransientStorageError
from strongroom.server.auth import ApiError, authenticate, bearer, new_token, require_role
from strongroom.server.catalog import AuditEntry, Catalog, TokenRow
from strongroom.server.gateway import VaultGateway
from strongroom.server.vaults import VaultRegistry
from strongroom.storage.backend import ObjectInfo
from strongroom.storage.http import ERROR_KIND_HEADER

MiB = 1024 * 1024


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
        await run_in_threadpool(self._audit, call, response.status_code)
        return response

    def _audit(self, call: Call, status: int) -> None:
        req, token = call.request, call.token
        self.catalog.audit(
            AuditEntry(
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
        )

    async def auth(self, call: Call) -> TokenRow:
        header = call.request.headers.get("authorization")
        call.token = await run_in_threadpool(authenticate, self.catalog, bearer(header))
        return call.token

    async def gateway(self, call: Call, *, create: bool = False) -> VaultGateway | None:
        token = call.token
        assert token is not None
        name = call.vault or ""
        return await run_in_threadpool(self.vaults.gateway, name, token, create)

    @contextlib.asynccontextmanager
    async def upload_slot(self, request: Request) -> AsyncIterator[None]:
        """Hold the upload's share of the memory budget while it is read and stored."""
        declared = request.headers.get("content-length", "")
        size = int(declared) if declared.isdigit() else self.limits.max_upload
        need = min(size, self.limits.max_upload, self.limits.upload_budget)
        async with self._budget:
            await self._budget.wait_for(lambda: self._in_flight + need <= self.limits.upload_budget)
            self._in_flight += need
        try:
            yield
        finally:
            async with self._budget:
                self._in_flight -= need
                self._budget.notify_all()

    async def body(self, request: Request) -> bytes:
        """The request body, refused when larger than the limit or slower than the timeouts."""
        limit = self.limits.max_upload
        too_large = ApiError(413, f"upload larger than the server's limit of {limit} bytes")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > 2 * limit):
            raise too_large
        # An oversized body up to twice the limit is read and dropped before the refusal:
        # a client still sending when the server closes sees a reset, not the reason.
        buf = bytearray()
        seen = 0
        stream = request.stream().__aiter__()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.body_timeout
        while True:
            wait = min(self.limits.body_idle_timeout, deadline - loop.time())
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), timeout=max(wait, 0.0))
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise ApiError(408, "upload too slow: the request body timed out") from None
            seen += len(chunk)
            if seen > 2 * limit:
                raise too_large
            if seen <= limit:
                buf += chunk
        if seen > limit:
            raise too_large
        return bytes(buf)


def _error(status: int, reason: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": reason, "kind": kind}, status, {ERROR_KIND_HEADER: kind})


def _info(info: ObjectInfo) -> dict[str, Any]:
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
    routes.add_admin_routes(app, server)
    routes.add_approval_routes(app, server)
    from strongroom.server.control import routes as control_routes

    plane = control_routes.install(app, server)
    from strongroom.server.web import routes as web_routes

    web_routes.install(app, server, plane)
    return app


__all__ = ["Call", "Limits", "Server", "create_app", "new_token", "require_role"]
